"""Load clients for the comparisons: `wrk` (closed loop, fast), and `servestack bench` (open loop, rates).

`wrk` is a C client that keeps `-c` connections busy from one thread, so the proxy, not the
client, is what runs out of CPU. When it is missing, `servestack bench` at the same concurrency
stands in (it tops out lower, which the results say). Fixed request rates always use `servestack
bench --rate`, since `wrk2` is not packaged in Debian.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


@dataclass(frozen=True)
class Measurement:
    """One round against one target: throughput and latency percentiles (milliseconds)."""

    client: str
    seconds: float
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def lua_script(body: bytes, api_key: str | None) -> str:
    text = body.decode()
    if "]]" in text:
        raise ValueError("the body must not contain ']]' (it goes into a Lua long string)")
    lines = ['wrk.method = "POST"', f"wrk.body = [[{text}]]", 'wrk.headers["Content-Type"] = "application/json"']
    if api_key:
        lines.append(f'wrk.headers["Authorization"] = "Bearer {api_key}"')
    return "\n".join(lines) + "\n"


def run_wrk(
    url: str, body: bytes, *, api_key: str | None, seconds: float, connections: int, cpus: str | None
) -> Measurement:
    return run_wrk_script(url, lua_script(body, api_key), seconds=seconds, connections=connections, cpus=cpus)


def run_wrk_script(url: str, script: str, *, seconds: float, connections: int, cpus: str | None) -> Measurement:
    """`wrk -t1 --latency` with the Lua `script` against `url`: `connections` kept busy for `seconds`."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
        file.write(script)
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s", file.name, url]
    if cpus is not None:
        argv = ["taskset", "-c", cpus, *argv]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    finally:
        Path(file.name).unlink(missing_ok=True)
    return parse_wrk(out)


def parse_wrk(out: str) -> Measurement:
    """Read `wrk --latency` output."""
    percent = {p: _ms(v, u) for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)}
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if done is None or rps is None or not percent:
        raise ValueError(f"cannot read wrk's output:\n{out}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return Measurement(
        client="wrk -t1",
        seconds=_ms(done.group(2), done.group(3)) / 1000,
        requests=int(done.group(1)),
        errors=errors,
        rps=float(rps.group(1)),
        p50_ms=percent.get("50", 0.0),
        p90_ms=percent.get("90", 0.0),
        p99_ms=percent.get("99", 0.0),
    )


def _ms(value: str, unit: str) -> float:
    return float(value) * UNITS_MS[unit]


def run_servestack_bench(
    url: str,
    *,
    model: str,
    api_key: str | None,
    stream: bool,
    seconds: float,
    cpus: str | None,
    connections: int | None = None,
    rate: float | None = None,
    warmup: int = 0,
    dataset: str = "random",
    input_len: int = 6,
) -> Measurement:
    """`servestack bench` against `url` at a concurrency or a rate; latency is end to end."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        argv = [sys.executable, "-m", "servestack", "bench", url, "-m", model, "-d", str(seconds)]
        argv += ["--rate", str(rate)] if rate is not None else ["-c", str(connections or 32)]
        argv += ["--stream" if stream else "--no-stream", "--dataset", dataset, "--input-len", str(input_len)]
        argv += ["--output-len", "16"]
        argv += ["--warmup", str(warmup), "--timeout", "30", "--json", str(out)]
        if api_key:
            argv += ["--api-key", api_key]
        if cpus is not None:
            argv = ["taskset", "-c", cpus, *argv]
        subprocess.run(argv, capture_output=True, check=True, timeout=seconds + 120)
        (level,) = json.loads(out.read_text())["levels"]
    e2e = level["e2e"] or {"p50": 0.0, "p90": 0.0, "p99": 0.0}
    return Measurement(
        client="servestack bench" + (f" --rate {rate:g}" if rate is not None else ""),
        seconds=level["duration"],
        requests=level["requests"],
        errors=sum(level["errors"].values()),
        rps=level["request_rate"],
        p50_ms=1000 * e2e["p50"],
        p90_ms=1000 * e2e["p90"],
        p99_ms=1000 * e2e["p99"],
    )

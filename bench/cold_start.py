"""Cold start: from launch to the first streamed token, the bare engine against `servestack up`.

    python bench/cold_start.py                 # 5 runs of each, alternating
    python bench/cold_start.py --runs 9

Bare: `python -m llama_cpp.server --model <SmolLM2 GGUF> --n_ctx 2048`. servestack: `servestack up`
with the bundled default stack (the same engine and model behind the gateway). The clock starts
right before the process is spawned and stops when the first content chunk of a streamed chat
completion arrives; until then a client retries every 20 ms (refused connections, and the
gateway's 503 while the engine loads, both mean "not yet"). servestack is byte-compiled first, as an
installed package is. Prints the medians and writes
bench/results/cold_start.json (or --out).
"""

from __future__ import annotations

import argparse
import compileall
import http.client
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import servestack
from harness.output import machine, write_results
from harness.procs import HarnessError, Proc, free_port
from servestack.stack import load_default_stack, resolve_model

POLL_SECONDS = 0.02
REQUEST = {
    "model": "smollm2",
    "max_tokens": 4,
    "stream": True,
    "messages": [{"role": "user", "content": "Say hello."}],
}
console = Console(width=None if sys.stdout.isatty() else 160)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs of each (default 5)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a start may take (default 120)")
    parser.add_argument("--out", type=Path, help="JSON output (default bench/results/cold_start.json)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    stack = load_default_stack()
    service = next(iter(stack.services.values()))
    model_path = resolve_model(service.model)
    compile_servestack()
    runs: dict[str, list[float]] = {"bare llama_cpp.server": [], "servestack up": []}
    with tempfile.TemporaryDirectory(prefix="servestack-coldstart-") as tmp:
        for number in range(1, args.runs + 1):
            for name in runs:
                seconds = one_start(name, Path(tmp), model_path, args.timeout, number)
                runs[name].append(seconds)
                console.print(f"[dim]run {number} · {name}: {seconds:.3f} s[/]", highlight=False)
    bare, ours = (statistics.median(v) for v in runs.values())
    doc = {
        "machine": machine(),
        "model": model_path,
        "runs": runs,
        "median_seconds": {name: statistics.median(v) for name, v in runs.items()},
        "ratio": ours / bare,
        "target_ratio": 1.2,
    }
    path = write_results("cold_start", doc, args.out)
    render(runs, ours / bare)
    console.print(f"[dim]wrote {path}[/]", highlight=False)
    return 0


def compile_servestack() -> None:
    """Byte-compile servestack as `pip install` does. An editable install under
    PYTHONDONTWRITEBYTECODE=1 (set on some machines) would otherwise compile every module at
    every start (~0.2 s here), a cost the engine's installed packages never pay."""
    compileall.compile_dir(Path(servestack.__file__).parent, quiet=1)


def one_start(name: str, tmp: Path, model_path: str, timeout: float, number: int) -> float:
    port = free_port()
    if name.startswith("bare"):
        argv = [sys.executable, "-m", "llama_cpp.server", "--model", model_path, "--n_ctx", "2048"]
        argv += ["--host", "127.0.0.1", "--port", str(port)]
        env: dict[str, str] = {}
    else:
        argv = [sys.executable, "-m", "servestack", "up", "--port", str(port)]
        env = {"SERVESTACK_HOME": str(tmp / f"home-{number}")}
    started = time.perf_counter()
    proc = Proc(f"{name.split()[0]}-{number}", argv, tmp, env=env, cwd=tmp)
    try:
        wait_first_token(proc, port, timeout)
        return time.perf_counter() - started
    finally:
        proc.stop(sig=2)


def wait_first_token(proc: Proc, port: int, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if not proc.alive():
            raise HarnessError(f"{proc.name} exited; {proc.log_path}:\n{proc.log_tail()}")
        if first_token(port):
            return
        time.sleep(POLL_SECONDS)
    raise HarnessError(f"{proc.name}: no token within {timeout:g}s; {proc.log_path}")


def first_token(port: int) -> bool:
    """Send a streamed chat request; True as soon as a chunk with content arrives."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", "/v1/chat/completions", json.dumps(REQUEST), {"Content-Type": "application/json"})
        response = connection.getresponse()
        if response.status != 200:
            return False
        for raw in response:
            line = raw.strip()
            if line.startswith(b"data:") and line != b"data: [DONE]" and _has_content(line[5:]):
                return True
        return False
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _has_content(payload: bytes) -> bool:
    try:
        event: Any = json.loads(payload)
        return any((c.get("delta") or {}).get("content") for c in event.get("choices") or [])
    except (ValueError, AttributeError):
        return False


def render(runs: dict[str, list[float]], ratio: float) -> None:
    table = Table(title="Cold start: launch → first streamed token (s)", header_style="bold", title_justify="left")
    for column in ("", "median", "min", "max", "runs"):
        table.add_column(column, justify="left" if not column else "right")
    for name, values in runs.items():
        table.add_row(name, f"{statistics.median(values):.3f}", f"{min(values):.3f}", f"{max(values):.3f}",
                      str(len(values)))  # fmt: skip
    console.print(table)
    verdict = "[green]meets[/]" if ratio <= 1.2 else "[red]misses[/]"
    console.print(f"servestack / bare = {ratio:.2f}× (target ≤ 1.2×: {verdict})")


if __name__ == "__main__":
    sys.exit(main())

"""A hung replica under default settings: SIGSTOP one of three simulator replicas, then SIGCONT it.

    python bench/hung_replica.py                       # 3 replicas, stop 10 s, ~80 s of traffic
    python bench/hung_replica.py --stop 10 --after 60 --rate 15 --json out.json

`servestack up` runs three `sim` replicas with the stack file's defaults (no `gateway:` section, so
every timeout is the default; the routing policy too, unless `--policy` names another). Requests
arrive at a fixed rate (open loop, one in `--stream-every` streamed; prompts of ~2,000 characters,
so `ttft_cost` measures prefill). After `--before` seconds one replica's process group gets SIGSTOP
(it accepts connections, answers nothing, probes time out), `--stop` seconds later SIGCONT, and
traffic goes on for `--after` seconds.

Reported: how long requests sent while the replica was stopped took (they should move to another
replica once it is found stalled, not wait for the client to give up), how many failed and how, when the
recovered replica served again after SIGCONT, and each replica's share per 5-second bin. Results go
to `bench/results/hung-replica-<time>.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from harness.output import machine, write_results
from harness.procs import Proc, free_port, wait_for

STACK = """\
version: 1
routing:
  policy: {policy}
services:
  chat:
    engine: sim
    model: sim
    replicas: 3
    args: ["--prefill-rate", "40000", "--decode-rate", "200", "--max-running", "64"]
"""
WORDS = [
    "harbor", "ledger", "signal", "copper", "meadow", "lantern", "orbit", "pebble", "quartz", "river", "saddle",
]  # fmt: skip
CLIENT_TIMEOUT = 120.0  # a request still open after this counts as a hang
BIN = 5.0


@dataclass
class Outcome:
    sent: float  # seconds after the start of traffic
    seconds: float
    status: int  # 0: no answer (client timeout or connection error)
    replica: str
    stream: bool
    code: str = ""


def status(env: dict[str, str]) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "servestack", "status", "--json"], capture_output=True, text=True, env=env, check=False
    )
    try:
        return list(json.loads(done.stdout)["services"])
    except (ValueError, KeyError):
        return []


async def one(session: aiohttp.ClientSession, url: str, i: int, stream: bool, began: float) -> Outcome:
    rng = random.Random(i)
    prompt = " ".join(rng.choice(WORDS) for _ in range(300))
    messages = [{"role": "user", "content": f"{i} {prompt}"}]
    body: dict[str, Any] = {"model": "chat", "messages": messages, "max_tokens": 8}
    if stream:
        body["stream"] = True
    sent = time.monotonic()
    outcome = Outcome(sent - began, 0.0, 0, "", stream)
    try:
        async with asyncio.timeout(CLIENT_TIMEOUT), session.post(url, json=body) as resp:
            raw = await resp.read()
        outcome.status = resp.status
        if resp.status != 200:
            outcome.code = str(json.loads(raw).get("error", {}).get("code", ""))
        elif stream:
            events = [e[6:] for e in raw.split(b"\n\n") if e.startswith(b"data: {")]
            outcome.replica = next((json.loads(e).get("system_fingerprint", "") for e in events), "")
            if events and b'"error"' in events[-1]:
                outcome.code = "stream " + str(json.loads(events[-1])["error"]["code"])
        else:
            outcome.replica = json.loads(raw).get("system_fingerprint", "")
    except TimeoutError:
        outcome.code = "client timeout"
    except aiohttp.ClientError as exc:
        outcome.code = type(exc).__name__
    outcome.seconds = time.monotonic() - sent
    outcome.replica = outcome.replica.removeprefix("sim:")
    return outcome


async def traffic(url: str, args: argparse.Namespace, victim_pgid: int) -> tuple[list[Outcome], dict[str, float]]:
    """Open-loop traffic at `args.rate`; SIGSTOP the victim after `before` seconds, SIGCONT after `stop` more."""
    total = args.before + args.stop + args.after
    marks: dict[str, float] = {}
    tasks: list[asyncio.Task[Outcome]] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        began = time.monotonic()
        i = 0
        while (now := time.monotonic() - began) < total:
            if "stopped" not in marks and now >= args.before:
                os.killpg(victim_pgid, signal.SIGSTOP)
                marks["stopped"] = now
            if "continued" not in marks and now >= args.before + args.stop:
                os.killpg(victim_pgid, signal.SIGCONT)
                marks["continued"] = now
            tasks.append(asyncio.create_task(one(session, url, i, i % args.stream_every == 0, began)))
            i += 1
            await asyncio.sleep(max(0.0, i / args.rate - (time.monotonic() - began)))
        if "continued" not in marks:
            os.killpg(victim_pgid, signal.SIGCONT)
            marks["continued"] = time.monotonic() - began
        return list(await asyncio.gather(*tasks)), marks


def summarize(outcomes: list[Outcome], marks: dict[str, float], victim: str) -> dict[str, Any]:
    stopped, continued = marks["stopped"], marks["continued"]
    during = [o for o in outcomes if stopped <= o.sent < continued]
    after = sorted((o for o in outcomes if o.sent >= continued and o.replica == victim), key=lambda o: o.sent)
    seconds = sorted(o.seconds for o in during) or [0.0]
    bins: dict[int, Counter[str]] = {}
    for o in outcomes:
        bins.setdefault(int(o.sent // BIN), Counter())[o.replica or f"failed {o.code}"] += 1
    return {
        "requests": len(outcomes),
        "failed": Counter(o.code or str(o.status) for o in outcomes if o.status != 200 or o.code),
        "during_stop": {
            "requests": len(during),
            "p50_seconds": statistics.median(seconds),
            "p99_seconds": seconds[min(len(seconds) - 1, int(len(seconds) * 0.99))],
            "max_seconds": seconds[-1],
            "failed": Counter(o.code or str(o.status) for o in during if o.status != 200 or o.code),
        },
        "victim_back_after_seconds": after[0].sent - continued if after else None,
        "victim_share_after": len(after) / max(1, sum(1 for o in outcomes if o.sent >= continued)),
        "bins": {f"{b * BIN:.0f}s": dict(c) for b, c in sorted(bins.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=15.0, help="requests per second")
    parser.add_argument("--before", type=float, default=10.0, help="seconds of traffic before the SIGSTOP")
    parser.add_argument("--stop", type=float, default=10.0, help="seconds the replica stays stopped")
    parser.add_argument("--after", type=float, default=60.0, help="seconds of traffic after the SIGCONT")
    parser.add_argument("--stream-every", type=int, default=3, help="one request in N streams")
    parser.add_argument("--victim", type=int, default=1, help="which replica to stop")
    parser.add_argument("--policy", default="ttft_cost", help="the routing policy (default: the default)")
    parser.add_argument("--json", type=Path, help="where to write the results")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hung-replica-") as tmp:
        home = Path(tmp)
        (home / "stack.yaml").write_text(STACK.format(policy=args.policy))
        env = {**os.environ, "SERVESTACK_HOME": str(home / "home")}
        port = free_port()
        up = Proc("up", [sys.executable, "-m", "servestack", "up", "-f", str(home / "stack.yaml"), "--port", str(port)],
                  home, env=env)  # fmt: skip
        try:
            wait_for(lambda: [r["status"] for r in status(env)] == ["ready"] * 3, 90, "three ready replicas")
            victim = next(r for r in status(env) if r["replica"] == args.victim)
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            outcomes, marks = asyncio.run(traffic(url, args, victim["pgid"]))
            victim_name = f"127.0.0.1:{victim['port']}"
            summary = summarize(outcomes, marks, victim_name)
        finally:
            up.stop(signal.SIGINT, timeout=60)
    print(json.dumps({k: v for k, v in summary.items() if k != "bins"}, indent=2, default=str))
    for name, counts in summary["bins"].items():
        print(f"{name:>5}  " + "  ".join(f"{r}:{n}" for r, n in sorted(counts.items())))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = write_results(
        f"hung-replica-{stamp}", {"machine": machine(), "args": vars(args) | {"json": None}, "marks": marks,
                                  "victim": victim_name, "summary": summary, "outcomes": [asdict(o) for o in outcomes]},
        args.json,
    )  # fmt: skip
    print(f"results: {path}")


if __name__ == "__main__":
    main()

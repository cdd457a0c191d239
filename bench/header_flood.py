"""Request-head floods against the gateway: how much memory they take, and whether it is given back.

    python bench/header_flood.py                    # 8 connections × 100 MiB of headers, 3 rounds
    python bench/header_flood.py --connections 1 --mib 100 --rounds 1

`servestack up` runs one `sim` replica; each round opens `--connections` connections at once, each
sending a request line and then `--mib` MiB of headers (stopping when the gateway closes it), then
one normal request checks the gateway still answers. Reported: the `up` process's resident memory
(VmRSS, which holds the gateway) before the first round and after each, what each connection was
answered, and the normal request's status. Results go to `bench/results/header-flood-<time>.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from harness.output import machine, write_results
from harness.procs import Proc, free_port

STACK = """\
version: 1
services:
  chat:
    engine: sim
    model: sim
    args: ["--instant"]
"""
LINE = b"X-Flood: " + b"a" * 1014 + b"\r\n"  # 1 KiB


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def flood(port: int, mib: int) -> str:
    """One connection's flood; what the gateway answered (its status line, or how the connection ended)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    block = LINE * 1024
    try:
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        for _ in range(mib):
            writer.write(block)
            await writer.drain()
        writer.write(b"\r\n")
        await writer.drain()
    except ConnectionError:
        pass
    try:
        answer = await asyncio.wait_for(reader.readline(), timeout=30)
        return answer.decode(errors="replace").strip() or "closed"
    except (ConnectionError, TimeoutError) as exc:
        return type(exc).__name__
    finally:
        writer.close()


def chat_status(port: int) -> int:
    body = b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}'
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(response.status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--mib", type=int, default=100, help="MiB of headers each connection sends")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="header-flood-") as tmp:
        home = Path(tmp)
        (home / "stack.yaml").write_text(STACK)
        env = {**os.environ, "SERVESTACK_HOME": str(home / "home")}
        port = free_port()
        up = Proc("up", [sys.executable, "-m", "servestack", "up", "-f", str(home / "stack.yaml"), "--port", str(port)],
                  home, env=env)  # fmt: skip
        rounds: list[dict[str, Any]] = []
        try:
            up.wait_http(f"http://127.0.0.1:{port}/health", timeout=90)
            gateway = up.pid  # the gateway runs inside the `up` process
            chat_status(port)
            before = rss_mib(gateway)
            for n in range(args.rounds):
                began = time.monotonic()
                answers = asyncio.run(_round(port, args.connections, args.mib))
                rounds.append({
                    "round": n + 1, "seconds": round(time.monotonic() - began, 2), "answers": answers,
                    "rss_mib": round(rss_mib(gateway), 1), "chat_status": chat_status(port),
                })  # fmt: skip
        finally:
            up.stop(signal.SIGINT, timeout=60)
    print(f"gateway RSS before: {before:.1f} MiB")
    for r in rounds:
        print(f"round {r['round']}: {r['seconds']}s, RSS {r['rss_mib']} MiB, chat {r['chat_status']}, {r['answers']}")
    doc = {"machine": machine(), "args": vars(args) | {"json": None}, "rss_before_mib": round(before, 1)}
    path = write_results(f"header-flood-{time.strftime('%Y%m%d-%H%M%S')}", {**doc, "rounds": rounds}, args.json)
    print(f"results: {path}")


async def _round(port: int, connections: int, mib: int) -> list[str]:
    return list(await asyncio.gather(*(flood(port, mib) for _ in range(connections))))


if __name__ == "__main__":
    main()

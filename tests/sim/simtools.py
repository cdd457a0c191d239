"""Shared helpers for the simulator tests (imported by conftest and tests; pytest puts this folder on sys.path)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx
import openai
import uvloop
from prometheus_client.parser import text_string_to_metric_families

from servestack.sim import SimConfig, SimServer

T = TypeVar("T")


class ThreadedSim:
    """A SimServer serving from its own event loop in a daemon thread, so sync clients can call it."""

    def __init__(self, config: SimConfig, **server_kwargs: Any) -> None:
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server = SimServer(config, **server_kwargs)

    def __enter__(self) -> ThreadedSim:
        self.thread.start()
        self.run(self.server.start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the simulator (cutting open connections) and its loop; safe to call twice."""
        if self.loop.is_closed():
            return
        self.run(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def run(self, coro: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the simulator's loop (its state is not thread-safe) and return its result."""

        async def wrapped() -> T:
            return fn()

        return self.run(wrapped())

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0, **kwargs)

    def metrics(self) -> dict[str, float]:
        return scrape(self.url)


def scrape(url: str) -> dict[str, float]:
    """Every sample of /metrics by name (labels dropped: one model, one engine)."""
    text = httpx.get(url + "/metrics", timeout=5).text
    return {
        sample.name + _le(sample.labels): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "finished_reason" not in sample.labels or sample.labels["finished_reason"] == "length"
    }


def _le(labels: dict[str, str]) -> str:
    return f"{{le={labels['le']}}}" if "le" in labels else ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SimProcess:
    """`python -m servestack.sim` as a real process on a free port."""

    def __init__(self, *flags: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "servestack.sim", "--port", str(self.port), *flags]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)

    def wait_listening(self, timeout: float = 15) -> float:
        """Block until the port accepts connections; return the seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            assert self.proc.poll() is None, self.output()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return time.monotonic() - started
            except OSError:
                time.sleep(0.02)
        raise AssertionError(f"the simulator did not listen within {timeout}s")

    def output(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        assert self.proc.stdout is not None
        return self.proc.stdout.read().decode(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


@contextmanager
def timer() -> Iterator[list[float]]:
    """`with timer() as t: ...` then `t[0]` holds the wall seconds taken."""
    result: list[float] = []
    started = time.monotonic()
    yield result
    result.append(time.monotonic() - started)

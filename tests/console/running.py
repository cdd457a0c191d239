"""A stack started as a user starts it (`servestack up -d`), for the console's tests: its URL, its secrets,
`status --json`, and the admin routes with or without the admin key. `down` stops it."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import free_port

ADMIN_KEY = "ss-admin-" + secrets.token_hex(12)
HF_TOKEN = "hf_" + secrets.token_hex(16)  # in a service's env: an engine may print it, no page may show it


def sim_stack(port: int, *, auth: bool = True, replicas: int = 2, extra: str = "") -> str:
    """Two simulator services (`chat` with `replicas` engines, `tools` with one) behind the gateway."""
    return f"""
version: 1
gateway:
  port: {port}
  auth: {{enabled: {"true" if auth else "false"}}}
services:
  chat:
    engine: sim
    model: Qwen/Qwen2.5-7B-Instruct
    served_names: [chat]
    replicas: {replicas}
    env: {{HF_TOKEN: "{HF_TOKEN}"}}
    args: ["--decode-rate", "400", "--prefill-rate", "20000"]
  tools:
    engine: sim
    model: tools
    args: ["--instant"]
{extra}"""


@dataclass
class Running:
    url: str
    home: Path
    env: dict[str, str]
    secrets: list[str] = field(default_factory=lambda: [ADMIN_KEY, HF_TOKEN])

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "servestack", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, "COLUMNS": "200"},
        )

    def status(self) -> dict[str, Any]:
        result = self.cli("status", "--json", timeout=30)
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout))

    def replica(self, label: str) -> dict[str, Any]:
        service, _, index = label.partition("#")
        for record in self.status()["services"]:
            if record["service"] == service and record["replica"] == int(index or 0):
                return dict(record)
        raise AssertionError(f"no replica {label} in status --json")

    def admin(self, key: str | None = ADMIN_KEY) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def log_path(self, label: str) -> Path:
        service, _, index = label.partition("#")
        return self.home / "logs" / f"{service}.{index or 0}.log"


def start(
    tmp_path: Path,
    stack_text: Callable[[int], str],
    *,
    env: dict[str, str] | None = None,
    up_args: tuple[str, ...] = (),
) -> Running:
    """`servestack up -d` of the stack in a fresh SERVESTACK_HOME, with the admin key set; returns once ready."""
    port = free_port()
    home = tmp_path / "home"
    stack = tmp_path / "stack.yaml"
    stack.write_text(stack_text(port))
    running = Running(
        f"http://127.0.0.1:{port}",
        home,
        {
            **os.environ,
            "SERVESTACK_HOME": str(home),
            "SERVESTACK_ADMIN_KEY": ADMIN_KEY,
            "SERVESTACK_RESTART_BACKOFF": "1",
            **(env or {}),
        },
    )
    result = running.cli("up", "-d", "-f", str(stack), *up_args, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return running


def stop(running: Running) -> None:
    running.cli("down", timeout=120)


def wait_until(check: Callable[[], Any], timeout: float = 30, every: float = 0.2, what: str = "condition") -> Any:
    """Call `check` until it returns something truthy (returned), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")

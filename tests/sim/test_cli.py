"""`servestack sim` and `python -m servestack.sim`: the same flags, one simulator in the foreground."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import httpx
from simtools import SimProcess, free_port

from servestack.sim import SimConfig, parse_args
from servestack.sim.config import flag

SERVESTACK = str(Path(sys.executable).with_name("servestack"))


def test_every_setting_has_a_flag_and_defaults_match() -> None:
    help_text = subprocess.run([SERVESTACK, "sim", "--help"], capture_output=True, text=True, check=True).stdout
    assert help_text.startswith("usage: servestack sim")
    for f in fields(SimConfig):
        assert (flag(f.name) if f.name != "models" else "--model") in help_text
    assert parse_args([]) == SimConfig()


def test_flags_become_settings() -> None:
    config = parse_args(
        ["--model", "a", "--model", "b", "--instant", "--crash-after-requests", "3", "--time-scale", "0.01",
         "--cache-capacity", "0", "--slow-start", "1.5"]
    )  # fmt: skip
    assert config.models == ("a", "b") and config.instant and config.crash_after_requests == 3
    assert config.time_scale == 0.01 and config.prefix_cache_capacity == 0 and config.slow_start == 1.5


def test_bad_values_exit_2_with_one_line() -> None:
    result = subprocess.run(
        [SERVESTACK, "sim", "--error-rate", "3", "--max-running", "0"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: invalid simulator settings: max-running must be >= 1; error-rate must be within 0..1"
    )
    unknown = subprocess.run([sys.executable, "-m", "servestack.sim", "--nope"], capture_output=True, text=True)
    assert unknown.returncode == 2 and "unrecognized arguments: --nope" in unknown.stderr


def test_servestack_sim_serves_until_sigterm() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [SERVESTACK, "sim", "--port", str(port), "--model", "tiny", "--replica", "r7", "--instant"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith(f"sim: serving tiny on http://127.0.0.1:{port} as replica r7 (instant)")
        resp = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert resp.status_code == 200 and resp.headers["x-sim-replica"] == "r7"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) in (0, -signal.SIGTERM)
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr:
            proc.stderr.close()


def test_python_dash_m_reports_the_slow_start(sim_process) -> None:  # type: ignore[no-untyped-def]
    sim: SimProcess = sim_process("--slow-start", "0.5")
    assert sim.wait_listening() >= 0.4

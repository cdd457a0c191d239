"""Engine processes: their own group, a log file, and a stop that leaves nothing behind."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from servestack.engines import get_engine
from servestack.runtimes import Launch
from servestack.supervisor import EngineProcess, group_alive, tail_lines

pytestmark = pytest.mark.anyio

# A parent that ignores SIGTERM and a child in the same group that does too: only SIGKILL ends them.
STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
subprocess.Popen([sys.executable, "-c", child])
print("started", flush=True)
time.sleep(60)
"""


async def test_stop_kills_the_whole_group_after_the_timeout(tmp_path: Path) -> None:
    process = await EngineProcess.spawn(Launch([sys.executable, "-c", STUBBORN]), tmp_path / "e.log")
    deadline = time.monotonic() + 10
    while "started" not in tail_lines(process.log_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    began = time.monotonic()
    code = await process.stop(timeout=0.5)
    assert code == -9
    assert 0.5 <= time.monotonic() - began < 5
    assert not group_alive(process.pgid)


async def test_polite_engine_stops_on_sigterm_and_log_has_the_command(tmp_path: Path) -> None:
    launch = Launch([sys.executable, "-c", "import time; print('hello', flush=True); time.sleep(60)"], {"X": "1"})
    process = await EngineProcess.spawn(launch, tmp_path / "e.log")
    deadline = time.monotonic() + 10
    while "hello" not in tail_lines(process.log_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert await process.stop(timeout=5) == -15
    lines = tail_lines(process.log_path)
    assert lines[0].startswith("=== servestack ") and "X=1" in lines[0]
    assert "hello" in lines


def test_tail_lines_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert tail_lines(tmp_path / "none.log") == []


def test_tail_lines_leaves_out_the_engines_probe_lines(tmp_path: Path) -> None:
    """llama-cpp-python's uvicorn logs every probe of /docs; a crash report must show the lines before them."""
    log = tmp_path / "e.log"
    probe = 'INFO:     127.0.0.1:41622 - "GET /docs HTTP/1.1" 200 OK'
    chat = 'INFO:     127.0.0.1:41700 - "POST /v1/chat/completions HTTP/1.1" 200 OK'
    log.write_text("\n".join(["model loaded", chat, *[probe] * 500, "Killed"]) + "\n")
    hide = get_engine("llamacpp").probe_log_lines
    assert tail_lines(log, 3, hide=hide) == ["model loaded", chat, "Killed"]
    assert tail_lines(log, 2) == [probe, "Killed"]

"""A replica stopped with SIGSTOP for 10 s under `servestack up` with default settings (bench/hung_replica.py).

What a user must see: no request fails and none waits for the stopped replica to come back (they
move to the others once its health probe goes unanswered), the replica gets traffic again soon after
SIGCONT, and afterwards every replica has its share (the default routing starves none). Run with
`-s` to see the figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

BENCH = Path(__file__).resolve().parents[2] / "bench" / "hung_replica.py"


def test_a_stopped_replica_holds_no_request_and_rejoins_with_default_settings(tmp_path: Path) -> None:
    out = tmp_path / "hung.json"
    args = ["--before", "5", "--stop", "10", "--after", "20", "--rate", "15", "--json", str(out)]
    run = subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=240, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(out.read_text())
    summary, marks = result["summary"], result["marks"]
    print("\n" + run.stdout)

    assert summary["failed"] == {}
    assert summary["during_stop"]["requests"] >= 100
    assert summary["during_stop"]["max_seconds"] < 8.0  # before: ~10 s, until SIGCONT
    assert summary["victim_back_after_seconds"] is not None and summary["victim_back_after_seconds"] < 15.0
    last = [o for o in result["outcomes"] if o["sent"] >= marks["continued"] + 10]
    shares = Counter(o["replica"] for o in last)
    assert len(shares) == 3 and min(shares.values()) >= 0.15 * len(last), shares

"""`servestack keys` and `servestack usage` as a user meets them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli


def test_keys_create_list_revoke(home: Path) -> None:
    created = run_cli("keys", "create", "--name", "alice", "--models", "a,b", "--rpm", "50", "--expires", "30d")
    assert created.returncode == 0, created.stderr
    secret = next(line for line in created.stdout.splitlines() if line.startswith("sk-ss-"))
    assert "only time" in created.stdout

    [key] = json.loads(run_cli("keys", "list", "--json").stdout)
    assert key["name"] == "alice" and key["models"] == ["a", "b"] and key["rpm"] == 50 and key["status"] == "active"
    assert key["hint"].endswith(secret[-4:]) and secret not in run_cli("keys", "list").stdout

    again = run_cli("keys", "create", "--name", "alice")
    assert again.returncode == 1 and "exists" in again.stderr and "Traceback" not in again.stderr
    assert run_cli("keys", "revoke", "alice").returncode == 0
    assert json.loads(run_cli("keys", "list", "--json").stdout)[0]["status"] == "revoked"
    missing = run_cli("keys", "revoke", "alice")
    assert missing.returncode == 1 and "no active key" in missing.stderr
    assert all(secret.encode() not in p.read_bytes() for p in home.rglob("*") if p.is_file())


def test_bad_expiry_and_empty_usage(home: Path) -> None:
    bad = run_cli("keys", "create", "--name", "x", "--expires", "someday")
    assert bad.returncode == 1 and "cannot read the time" in bad.stderr
    assert "no usage recorded yet" in run_cli("usage").stdout

"""What a launcher does on its node without Ray: the ports it hands out are its own until it dies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from servestack.cluster import node
from servestack.cluster.node import claim_port, remove_dead_claims


def test_two_launchers_never_hand_out_the_same_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    offered = iter([41000, 41000, 41000, 41001])  # the kernel offers a port again once it is released
    monkeypatch.setattr(node, "free_port", lambda address: next(offered))
    claims = tmp_path / "ports"
    assert claim_port(claims, "127.0.0.1", 100) == 41000
    assert claim_port(claims, "127.0.0.1", 200) == 41001
    assert (claims / "41000").read_text() == "100"


def test_a_dead_launchers_ports_are_free_again(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    claims = tmp_path / "ports"
    claims.mkdir()
    (claims / "41000").write_text(dead.stdout.strip())
    (claims / "41001").write_text(str(os.getpid()))
    (claims / "41002").write_text("")  # being written by a launcher now
    remove_dead_claims(claims)
    assert sorted(p.name for p in claims.iterdir()) == ["41001", "41002"]

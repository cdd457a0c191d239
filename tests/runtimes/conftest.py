"""Fake apptainer/docker/podman/pixi/conda/nvidia-smi on a PATH of their own, and a fake SGLang package."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

FAKES = Path(__file__).resolve().parents[1] / "fakes"
TOOLS = ("apptainer", "docker", "podman", "pixi", "conda", "nvidia-smi")


@dataclass
class FakeTools:
    bin: Path
    record: Path

    def env(self, **extra: str) -> dict[str, str]:
        """What a service's `env` needs so its engine finds the fakes (PATH, the fake SGLang, the record)."""
        return {
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(FAKES / "python"),
            "FAKE_IMAGE_PYTHONPATH": str(FAKES / "python"),
            "FAKE_RECORD": str(self.record),
            **extra,
        }

    def calls(self, tool: str | None = None) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        lines = [json.loads(line) for line in self.record.read_text().splitlines()]
        return [c for c in lines if tool is None or c["tool"] == tool]


@pytest.fixture
def fake_tools(tmp_path: Path) -> FakeTools:
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        wrapper = bin_dir / tool
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKES / "fake_tool.py"}" {tool} "$@"\n')
        wrapper.chmod(0o755)
    return FakeTools(bin=bin_dir, record=tmp_path / "calls.jsonl")


@pytest.fixture
def fakes_on_path(fake_tools: FakeTools, monkeypatch: pytest.MonkeyPatch) -> FakeTools:
    """The fakes on servestack's own PATH too: container runtimes start `apptainer`/`docker` from it
    (a service's `env` is for the engine inside the container)."""
    monkeypatch.setenv("PATH", fake_tools.env()["PATH"])
    monkeypatch.setenv("FAKE_RECORD", str(fake_tools.record))
    monkeypatch.setenv("FAKE_IMAGE_PYTHONPATH", str(FAKES / "python"))
    return fake_tools

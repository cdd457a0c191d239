"""Fixtures for modelinfo tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from modelinfo_fixtures import write_tiny_gguf


@pytest.fixture
def tiny_gguf(tmp_path: Path) -> Path:
    return write_tiny_gguf(tmp_path / "tiny-llama-F16.gguf")

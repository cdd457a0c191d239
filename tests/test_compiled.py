"""The compiled build (setup.py): CI runs the gateway's tests once more on it with SERVESTACK_EXPECT_COMPILED=1,
and this makes sure that run really loads the extensions rather than the Python files beside them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from servestack.compiled import build_name, compiled_count, is_compiled
from servestack.gateway.edge import lane_call, protocol
from servestack.gateway.relay import connection

expected = os.environ.get("SERVESTACK_EXPECT_COMPILED") == "1"


def test_the_build_is_the_one_expected() -> None:
    assert is_compiled(lane_call) is expected
    assert is_compiled(connection) is expected
    assert is_compiled(protocol) is expected  # the server's protocol: every request passes through it
    assert (compiled_count() > 0) is expected


def test_servestack_version_names_the_build() -> None:
    out = subprocess.run([sys.executable, "-m", "servestack", "version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith(f"({build_name()})")
    assert ("compiled with mypyc" in out.stdout) is expected


@pytest.mark.skipif(not expected, reason="the compiled build only")
def test_what_stays_python_is_python() -> None:
    from servestack import errors

    assert not is_compiled(errors)  # exception classes override `status` as class attributes

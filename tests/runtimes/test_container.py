"""A named container is removed by its name, and its name is free once `remove` returns."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from servestack.runtimes.container import Container

# A docker CLI whose container's own removal (`--rm`) is still under way when `rm` returns: `rm` fails
# with "removal already in progress", and `container inspect` finds the container three more times.
SLOW_REMOVAL = """#!/bin/sh
echo "$@" >> "{calls}"
case "$1" in
  rm) echo "Error: removal of container $3 is already in progress" >&2; exit 1 ;;
  container)
    seen=$(grep -c '^container inspect' "{calls}")
    [ "$seen" -le 3 ] && exit 0
    echo "Error: No such container: $3" >&2; exit 1 ;;
esac
exit 2
"""


def test_remove_waits_until_the_name_is_free(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    cli = tmp_path / "docker"
    cli.write_text(SLOW_REMOVAL.format(calls=calls))
    cli.chmod(0o755)

    started = time.monotonic()
    asyncio.run(Container(str(cli), "servestack-1234abcd-a-0").remove())

    assert calls.read_text().splitlines() == [
        "rm --force servestack-1234abcd-a-0",
        *["container inspect servestack-1234abcd-a-0"] * 4,
    ]
    assert time.monotonic() - started < 5


def test_remove_of_a_container_that_is_not_there_returns_at_once(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    cli = tmp_path / "docker"
    cli.write_text(SLOW_REMOVAL.format(calls=calls).replace("-le 3", "-le 0"))
    cli.chmod(0o755)

    asyncio.run(Container(str(cli), "gone").remove())

    assert calls.read_text().splitlines() == ["rm --force gone", "container inspect gone"]

"""A named container an engine runs in: stopped and removed by its name, whatever became of its client.

Signals reach a container only through its `run` client: a client killed with SIGKILL leaves the
container running, holding its port and its name. So each replica's container is named after the
instance's state dir, the service and the replica; the supervisor stops it by that name, and removes
a leftover of that name before starting it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

CLI_GRACE_SECONDS = 30.0  # a `stop` or `rm` the daemon does not answer in this long is given up
NAME_FREE_POLL_SECONDS = 0.1


def container_name(state_dir: Path, service: str, replica: int) -> str:
    """`servestack-<8 hex of the state dir>-<service>-<replica>`: the same at every start of one replica of
    one instance, and different for another instance on this machine. A service name's characters
    (stack/schema.py) are all allowed in a container name."""
    scope = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:8]
    return f"servestack-{scope}-{service}-{replica}"


@dataclass(frozen=True)
class Container:
    cli: str  # docker | podman: their `stop` and `rm` agree
    name: str

    async def stop(self, timeout: float) -> None:
        """SIGTERM its init (which passes it to the engine), SIGKILL after `timeout`; one already gone is no error."""
        await _run_quietly(
            [self.cli, "stop", "--time", str(math.ceil(timeout)), self.name], timeout + CLI_GRACE_SECONDS
        )

    async def remove(self) -> None:
        """Remove it, running or not, and wait until its name is free; one already gone is no error.

        The containers run with `--rm`: killing one starts the daemon's own removal, and a `rm` that
        meets it returns at once ("removal already in progress") while the name is still taken, so a
        `run` right after it would fail with a name conflict.
        """
        await _run_quietly([self.cli, "rm", "--force", self.name], CLI_GRACE_SECONDS)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLI_GRACE_SECONDS
        while loop.time() < deadline and await self._exists():
            await asyncio.sleep(NAME_FREE_POLL_SECONDS)

    async def _exists(self) -> bool:
        return await _run_quietly([self.cli, "container", "inspect", self.name], CLI_GRACE_SECONDS) == 0


async def _run_quietly(argv: list[str], timeout: float) -> int | None:
    """`argv`'s exit code (None: no such CLI, or it did not finish in `timeout`)."""
    # Its own session: a Ctrl-C in the controller's terminal must not cut a stop short.
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
    except FileNotFoundError:  # no CLI: no container of it either
        return None
    try:
        return await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return None

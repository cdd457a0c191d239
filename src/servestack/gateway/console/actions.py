"""Actions taken from the console: each runs as its own task, so a closed tab does not cut a restart short.

An action is recorded when asked for (`running`), and again when the source says how it ended (`done`, or
`failed` with the control socket's error, fix and log tail). The page polls the record for its result and
the overview for its progress (the replicas' states as they drain, stop, start and get ready). The last
KEPT records are kept in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from servestack.gateway.console.source import ConsoleSource

log = logging.getLogger("servestack.gateway")
KEPT = 50


@dataclass
class Action:
    id: int
    service: str
    action: str
    by: str  # who asked: `admin key`, `localhost`
    started_at: float
    state: str = "running"  # running | done | failed
    finished_at: float | None = None
    result: dict[str, Any] = field(default_factory=dict)


class ActionLog:
    def __init__(self, source: ConsoleSource, *, clock: Callable[[], float] = time.time) -> None:
        self.source = source
        self.clock = clock
        self.actions: deque[Action] = deque(maxlen=KEPT)
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    def begin(self, service: str, action: str, by: str) -> Action:
        """Record the action and start it; returns at once."""
        record = Action(next(self._ids), service, action, by, self.clock())
        self.actions.append(record)
        task = asyncio.create_task(self._run(record), name=f"console-{action}-{service}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info("console: %s %s (by %s)", action, service, by)
        return record

    async def _run(self, record: Action) -> None:
        try:
            result = await self.source.act(record.service, record.action)
        except Exception as error:  # a bug in the source: say so on the page rather than hang at `running`
            log.exception("console action %s %s failed unexpectedly", record.action, record.service)
            result = {"ok": False, "error": f"the action failed unexpectedly: {error}", "fix": "see the gateway's log"}
        record.result = result
        record.state = "done" if result.get("ok") else "failed"
        record.finished_at = self.clock()

    def describe(self) -> list[dict[str, Any]]:
        """The kept actions, newest first."""
        return [asdict(a) for a in reversed(self.actions)]

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

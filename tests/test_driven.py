"""A coroutine stepped without a Task: its result, its error, an error thrown in where it waits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvloop

from servestack.driven import Driven


@pytest.mark.parametrize("loop_factory", [None, uvloop.new_event_loop], ids=["asyncio", "uvloop"])
def test_a_driven_coroutine_ends_as_it_would_in_a_task(loop_factory: Any) -> None:
    async def waits_for(future: asyncio.Future[int], cleanup: list[str]) -> int:
        try:
            return await future + 1
        except asyncio.CancelledError:
            cleanup.append("closed")
            raise

    async def failing() -> int:
        raise ValueError("no engine")

    async def yields_bare() -> int:
        await asyncio.sleep(0)
        return 0

    async def scenario() -> list[Any]:
        loop = asyncio.get_running_loop()
        seen: list[Any] = []
        cleanup: list[str] = []
        answer: asyncio.Future[int] = loop.create_future()
        Driven(waits_for(answer, cleanup), lambda result, error: seen.append((result, error)))
        assert seen == []  # it waits, as a Task would
        answer.set_result(41)
        await asyncio.sleep(0.01)
        Driven(failing(), lambda result, error: seen.append((result, type(error))))
        stuck = Driven(waits_for(loop.create_future(), cleanup), lambda result, error: seen.append(type(error)))
        stuck.throw(asyncio.CancelledError())
        stuck.throw(asyncio.CancelledError())  # over already: nothing more
        Driven(yields_bare(), lambda result, error: seen.append(str(error)))
        return [*seen, cleanup]

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        seen = runner.run(scenario())
    assert seen[:3] == [(42, None), (None, ValueError), asyncio.CancelledError]
    assert "not a future" in seen[3] and seen[4] == ["closed"]

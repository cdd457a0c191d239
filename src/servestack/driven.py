"""A coroutine run to its end without a Task: for the event loop's per-connection coroutines.

Why: `loop.connect_accepted_socket` and `loop.create_connection` are coroutines, and a Task for each
costs an object, a context and a scheduled first step for every connection the gateway accepts or
opens to an engine — a few µs of the ~120 µs a relayed stream costs to open (docs/benchmarks.md,
"Streams at scale"). A coroutine that awaits only futures can be stepped from those futures' done
callbacks, as a Task steps it, without the rest of a Task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Driven(Generic[T]):
    """Steps `coroutine` until it ends, then calls `done(result, None)` or `done(None, error)`."""

    __slots__ = ("_coroutine", "_done", "_waiting")

    def __init__(
        self, coroutine: Coroutine[Any, Any, T], done: Callable[[T | None, BaseException | None], None]
    ) -> None:
        self._coroutine = coroutine
        self._done = done
        self._waiting: asyncio.Future[Any] | None = None
        self._step(None)

    def throw(self, error: BaseException) -> None:
        """End the coroutine with `error` raised where it waits (a deadline, a cancellation); nothing if it ended."""
        waiting = self._waiting
        if waiting is not None:
            waiting.remove_done_callback(self._step)
            # As a Task's cancel does: what it waits on stops too. Left pending, asyncio's connect future
            # would still take the connect's failure, and report it as never retrieved.
            waiting.cancel()
            self._step(None, error)

    def _end(self, result: T | None, error: BaseException | None) -> None:
        done = self._done
        # Let go of the callback: its owner usually holds this object, and a cycle left to the collector
        # costs more than the whole of this class saves (thousands of streams opening at once).
        self._done = _ended
        done(result, error)

    def _step(self, _future: asyncio.Future[Any] | None, error: BaseException | None = None) -> None:
        self._waiting = None
        try:
            awaited = self._coroutine.send(None) if error is None else self._coroutine.throw(error)
        except StopIteration as stop:
            self._end(stop.value, None)
            return
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            self._end(None, exc)
            return
        if not asyncio.isfuture(awaited):  # a bare `yield` (asyncio.sleep(0)): not what this runs
            self._coroutine.close()
            self._end(None, RuntimeError(f"{self._coroutine!r} awaited {awaited!r}, not a future"))
            return
        awaited._asyncio_future_blocking = False  # as a Task does: the coroutine's `await` handed it over
        self._waiting = awaited
        awaited.add_done_callback(self._step)


def _ended(_result: object, _error: BaseException | None) -> None:
    """The callback of a coroutine that has ended."""

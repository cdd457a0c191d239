"""What the simulator adds to the shared ASGI plumbing (`servestack.asgi`): noticing disconnects.

The simulator is a plain ASGI callable under uvicorn (httptools, uvloop): measured against
aiohttp.web on this kind of machine it answers about a third more requests per second, and in
instant mode it must outrun the gateways it is used to measure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from servestack.asgi import Receive

MAX_BODY_BYTES = 64 * 1024 * 1024


async def until_disconnect(receive: Receive) -> None:
    """Return when the client goes away (or, under uvicorn, once the response is complete)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def cancel_on_disconnect(work: Coroutine[Any, Any, None], receive: Receive) -> None:
    """Run `work` until it ends or the client disconnects; a disconnect cancels it (freeing its slot)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(until_disconnect(receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, watcher):
            if not pending.done():
                pending.cancel()
        await asyncio.gather(task, watcher, return_exceptions=True)
    if not task.cancelled() and (error := task.exception()) is not None:
        raise error

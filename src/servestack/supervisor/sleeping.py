"""The HTTP calls that put an engine to sleep and wake it (each engine declares them: `engines/sleep.py`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from servestack.engines.sleep import HttpCall
from servestack.errors import EngineError

if TYPE_CHECKING:
    import aiohttp

ANSWER_LIMIT = 500  # characters of an engine's refusal quoted in the error


async def call_engine(session: aiohttp.ClientSession, base_url: str, call: HttpCall, *, timeout: float) -> None:
    """Make `call` to the engine at `base_url`; EngineError when it is refused, fails or takes longer than `timeout`."""
    import aiohttp

    url = base_url + call.path
    try:
        async with session.request(
            call.method, url, json=call.body, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as resp:
            if resp.status < 300:
                return
            said = (await resp.text())[:ANSWER_LIMIT].strip()
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise EngineError(f"{call.method} {url} failed: {exc or type(exc).__name__}") from None
    raise EngineError(f"{call.method} {url} answered HTTP {resp.status}" + (f": {said}" if said else ""))

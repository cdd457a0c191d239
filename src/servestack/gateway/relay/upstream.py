"""The gateway's one client to the engines, and its one seam: opening an engine call.

Every surface (OpenAI's byte-for-byte relay, Ollama's translation, SGLang's /generate) gets its answer
the same way:

    async with upstream.call(exchange, endpoint) as answer:   # the request is sent, the head is in
        body = await answer.read()                            # or: async for chunk in answer.chunks()
        ...translate and send...

`call` does what every surface needs and none should repeat: the request's headers (the client's
that matter, its id in the form the engine takes), the endpoint's in-flight count, the first-byte
deadline (deadline.py), and the mapping of failures to the gateway's errors. An engine's error answer
(4xx/5xx) is raised as what its status means (engine_errors.py) before the block runs; a failure to
connect, a deadline, or an answer cut short, inside the block or before it, leaves the block as
UpstreamUnavailable, UpstreamTimeout or UpstreamError (ReplicaGone when the engine went away meanwhile:
the table ends the calls open on it); a connection the gateway has no descriptor for, as
OpenFilesExhausted (its own shortage, logged at most every few seconds). Until a surface has sent the
client anything, such a GatewayError may be retried on another replica (the dispatcher decides). Each
answer and chunk received counts as the engine's progress (a wedged engine sends none). One pool of
keep-alive connections (`http1.Http1Pool`) serves every call; a client that disconnects has its request
cancelled by the server (edge/protocol.py), which closes the engine connection so the engine stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Literal

from servestack.errors import GatewayError, ReplicaGone, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from servestack.gateway.fleet.endpoint import Endpoint
from servestack.gateway.relay.deadline import Deadline, first_byte_deadline
from servestack.gateway.relay.engine_errors import engine_error
from servestack.gateway.relay.exchange import Exchange
from servestack.gateway.relay.headers import relayed_headers, upstream_headers
from servestack.gateway.relay.http1 import Abandoned, ConnectError, Http1Pool, Response
from servestack.open_files import ShortageLog, exhausted, shortage

log = logging.getLogger("servestack.gateway")


class Answer:
    """An engine's answer whose head has arrived: its status and headers, then its body, whole or in chunks."""

    __slots__ = ("_deadline", "_exchange", "_response", "_vitals")

    def __init__(self, response: Response, exchange: Exchange, endpoint: Endpoint, deadline: Deadline) -> None:
        self._response = response
        self._exchange = exchange
        self._vitals = endpoint.vitals
        self._deadline = deadline

    @property
    def status(self) -> int:
        return self._response.status

    def relayed_headers(self) -> list[tuple[bytes, bytes]]:
        """The response headers a byte-for-byte relay passes on to the client."""
        return relayed_headers(self._response)

    async def read(self) -> bytes:
        """The whole body; the answer has begun once it is in (the first-byte deadline no longer applies)."""
        body = await self._response.read()
        self._vitals.progress += 1
        self._deadline.started()
        self._exchange.first_byte_at = time.monotonic()
        return body

    async def next_chunk(self) -> bytes:
        """The body's next part, as much as has arrived (b"" at its end); the answer begins with its first."""
        chunk = await self._response.next_chunk()
        if chunk:
            self._vitals.progress += 1
            if self._exchange.first_byte_at is None:
                self._deadline.started()
                self._exchange.first_byte_at = time.monotonic()
        return chunk

    async def forward(self, write: Callable[[bytes], bool], drain: Callable[[], Awaitable[None]]) -> None:
        """The rest of the body to `write`, each part as it arrives, until its end (connection.Response.forward)."""
        vitals = self._vitals

        def counted(chunk: bytes) -> bool:
            vitals.progress += 1
            return write(chunk)

        await self._response.forward(counted, drain)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (`next_chunk` until the end)."""
        while chunk := await self.next_chunk():
            yield chunk


class Upstream:
    """The gateway's client side: one connection pool to every engine."""

    def __init__(
        self,
        connect_timeout: float = 5.0,
        idle_timeout: float = 600.0,
        first_byte_timeout: float | Literal["auto"] = "auto",
    ) -> None:
        """`first_byte_timeout`: "auto" (scaled to each request), seconds, or 0 for none (deadline.py)."""
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self.first_byte_timeout = first_byte_timeout
        self._session: Http1Pool | None = None
        self._shortages = ShortageLog(log, "requests refused with 503")

    @property
    def deadline_check_every(self) -> float:
        """How often deadlines must be checked to end each within a quarter of its length (at most a second)."""
        timeout = self.first_byte_timeout
        return 1.0 if timeout == "auto" or not timeout else min(1.0, max(0.02, timeout / 4))

    @property
    def session(self) -> Http1Pool:
        if self._session is None:
            self._session = Http1Pool(connect_timeout=self._connect_timeout, idle_timeout=self._idle_timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def failure(self, endpoint: Endpoint, exc: BaseException, first_byte: Deadline) -> GatewayError:
        """The gateway's error for a call to `endpoint` that failed with `exc` (see the module's docstring)."""
        if exhausted(exc):  # no descriptor for the engine's connection: the gateway's own shortage
            error = shortage(exc)
            self._shortages.note(error)
            return error
        return _upstream_error(endpoint, exc, first_byte)

    @contextlib.asynccontextmanager
    async def call(self, exchange: Exchange, endpoint: Endpoint) -> AsyncIterator[Answer]:
        """Send `exchange.body` to `endpoint` at `exchange.upstream_path`; the answer once its head is in.

        Raises GatewayError for an engine's error answer and for any failure to get the answer (see above).
        """
        exchange.endpoint = endpoint
        url = endpoint.base_url + exchange.upstream_path
        headers = upstream_headers(exchange, endpoint)
        first_byte = first_byte_deadline(self.first_byte_timeout, exchange, endpoint)
        call = self.session.post(url, data=exchange.body, headers=headers)
        endpoint.in_flight += 1
        endpoint.vitals.calls.add(call)  # ended by the table if the engine goes away meanwhile
        try:
            async with first_byte, call as response:
                exchange.status = response.status
                if response.status >= 400:
                    raise engine_error(endpoint, response.status, await response.read(), exchange.request_id)
                yield Answer(response, exchange, endpoint, first_byte)
        except GatewayError:
            raise
        except Exception as exc:
            raise self.failure(endpoint, exc, first_byte) from exc
        finally:
            endpoint.vitals.calls.discard(call)
            endpoint.in_flight -= 1
            exchange.finished_at = time.monotonic()


def _upstream_error(endpoint: Endpoint, exc: BaseException, first_byte: Deadline) -> GatewayError:
    where = f"the engine for {endpoint.service!r} ({endpoint.base_url})"
    if isinstance(exc, ConnectError):
        return UpstreamUnavailable(f"{where} is not reachable: {_describe(exc)}", retry_after=5)
    if isinstance(exc, Abandoned):
        return ReplicaGone(f"{where} went away during the request ({exc})")
    if first_byte.reason is not None:
        return UpstreamTimeout(f"{where} {first_byte.reason}")
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return UpstreamTimeout(f"{where} did not answer in time")
    return UpstreamError(f"{where} failed: {_describe(exc)}")


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__

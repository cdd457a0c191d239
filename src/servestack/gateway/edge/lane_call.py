"""One request on the callback data path (lane.py), from its admission to the end of its answer.

`LaneCall` does what `Dispatcher.dispatch`, `Upstream.call` and the OpenAI relay do for one attempt, from
callbacks: a replica, the request shaped for its engine, the engine call on a kept-alive connection
(or a new one), the answer followed as it arrives (`Response.notify`), written to the client, and the
accounting when it ends. What it does not answer itself it hands to the ASGI app (`_hand_over`).
"""

from __future__ import annotations

import asyncio
import logging
import time

from servestack.asgi import Scope, Send, sse_error_event
from servestack.errors import GatewayError, InternalError, OpenFilesExhausted, UpstreamError
from servestack.gateway.edge.corked import chunk as framed
from servestack.gateway.edge.corked import response_head
from servestack.gateway.edge.http_connection import CLIENT_GONE
from servestack.gateway.edge.lane_types import LaneHost, LaneState, raising
from servestack.gateway.edge.pipeline import Admission
from servestack.gateway.edge.protocol import Resume
from servestack.gateway.fleet.routing import Attempt, RouteRequest
from servestack.gateway.openai.attempt import prepare_attempt
from servestack.gateway.openai.relay import count_stream_usage
from servestack.gateway.openai.usage import StreamTap, usage_of
from servestack.gateway.relay.connection import Connection, ProtocolError, Response
from servestack.gateway.relay.deadline import Deadline, first_byte_deadline
from servestack.gateway.relay.engine_errors import engine_error
from servestack.gateway.relay.exchange import Exchange
from servestack.gateway.relay.headers import upstream_headers
from servestack.gateway.relay.http1 import Abandoned
from servestack.gateway.relay.prompt import GENERATION_PATHS, check_context

log = logging.getLogger("servestack.gateway")


class LaneCall:
    """One request on the lane, from its admission to the end of its answer (or its hand-over)."""

    __slots__ = (
        "admission", "attempt", "body", "connection", "deadline", "ended", "exchange", "head", "host", "key",
        "lane", "open", "paused", "resent", "response", "reused", "scope", "started", "tap", "tried", "watch_first",
    )  # fmt: skip

    def __init__(
        self,
        lane: LaneState,
        host: LaneHost,
        scope: Scope,
        body: bytes,
        exchange: Exchange,
        admission: Admission | None,
    ) -> None:
        self.lane = lane
        self.host = host
        self.scope = scope
        self.body = body
        self.exchange = exchange
        self.admission = admission
        self.tried: list[str] = []
        self.attempt: Attempt | None = None
        self.tap: StreamTap | None = None
        self.connection: Connection | None = None
        self.response: Response | None = None
        self.deadline: Deadline | None = None
        self.key: tuple[str, int] = ("", 0)
        self.head = b""
        self.open = False  # the engine call is open (in-flight count, the replica's calls)
        self.started = False  # the client's answer has begun
        self.ended = False  # answered, handed over, or the client left
        # reused: on a kept-alive connection; resent: on a new one after that failed; paused: client is slow
        self.reused = self.resent = self.paused = self.watch_first = False

    def begin(self) -> bool:
        """Choose a replica and send the request; False once the call is over (handed over)."""
        exchange, dispatcher = self.exchange, self.lane.gateway.dispatcher
        pool = exchange.pool
        queued = self.admission is not None and self.admission.waits is not None
        if queued or (dispatcher.gate is not None and pool.on_demand):
            # A queue turn or a model load to wait for: the ASGI path waits.
            self._hand_over(lambda send: self.lane.gateway.proceed(exchange, self.admission, send, self.lane.relay))
            return False
        try:
            if pool.context_length is not None and exchange.path in GENERATION_PATHS:
                check_context(exchange.payload, exchange.prompt_size, pool.context_length)
            dispatcher.budget.deposit()
            self._send()
        except GatewayError as error:
            self._hand_over(raising(error))
            return False
        return not self.ended

    def _send(self) -> None:
        """One attempt: a replica, the request shaped for it, and the engine call opened."""
        exchange, lane = self.exchange, self.lane
        dispatcher, upstream = lane.gateway.dispatcher, lane.gateway.upstream
        attempt = self.attempt = dispatcher.attempt(exchange, RouteRequest(exchange.payload), self.tried)
        endpoint = attempt.endpoint
        try:
            if lane.prepare is not None:
                lane.prepare(exchange, endpoint)
            self.tap = prepare_attempt(exchange, endpoint, count_tokens=lane.relay.counts_tokens)
        except GatewayError as error:
            dispatcher.failed(exchange, attempt, error)  # raises: a request its engine cannot take (400)
            raise
        pool = exchange.pool
        self.watch_first = exchange.stream and pool.policy.watches_first_token and pool.routed
        exchange.endpoint = endpoint
        session = upstream.session
        self.deadline = first_byte_deadline(upstream.first_byte_timeout, exchange, endpoint)
        try:
            url = endpoint.base_url + exchange.upstream_path
            self.key, self.head = session.request_head(url, len(exchange.body), upstream_headers(exchange, endpoint))
        except Exception as exc:
            self._failed(upstream.failure(endpoint, exc, self.deadline))
            return
        endpoint.in_flight += 1
        endpoint.vitals.calls.add(self)  # ended by the table if the engine goes away meanwhile (abandon)
        self.open = True
        assert lane.loop is not None
        self.deadline.arm(lane.loop.time(), self._late)
        connection = session.take_idle(self.key)
        if connection is None:
            self.reused = False
            self._connect_later()
        else:
            self.reused = True
            self._start(connection)

    def _connect_later(self) -> None:
        # A new connection only, not one per request. Opened from the loop's next turn rather than from within
        # the client's parser callback, which measured ~30 µs more a stream when hundreds open at once.
        assert self.lane.loop is not None
        self.lane.loop.call_soon(self.lane.gateway.upstream.session.open, self.key, self._connected)

    def _connected(self, connection: Connection | None, error: BaseException | None) -> None:
        if connection is None:
            if not self.ended and self.response is None and error is not None:
                self._engine_failed(error)
            return
        if self.ended or not self.open:  # the client left, or the call ended, while it connected
            connection.close()
            return
        self._start(connection)

    def _start(self, connection: Connection) -> None:
        self.connection = connection
        self.response = response = connection.start(self.head, self.exchange.body)
        response.notify = self._event

    # the engine's side
    def _event(self) -> None:
        """The answer changed (head, body, end or failure): take it as far as it goes."""
        response = self.response
        if self.ended or response is None:
            return
        try:
            self._follow(response)
        except Exception:
            # A bug (raised on, it would pass for the engine breaking HTTP): a 500, or a stream cut short.
            log.exception("unexpected error relaying %s %s", self.scope["method"], self.scope["path"])
            self._close_call(keep=False)
            if self.started:
                self.ended = True
                self.host.abort()
            else:
                self._hand_over(raising(InternalError("the gateway failed unexpectedly (see its log)")))

    def _follow(self, response: Response) -> None:
        if not response.head_done:
            if response.error is not None:
                self._engine_failed(response.error)
            return
        status = response.status
        if (status >= 400 or not self.exchange.stream) and not response.reading_whole:
            response.read_whole()  # taken at its end: no word of each part
            response.notify_body = False
        if status >= 400:
            if response.complete:
                assert self.attempt is not None
                error = engine_error(self.attempt.endpoint, status, response.take(), self.exchange.request_id)
                self.exchange.status = status
                self._close_call(keep=False)
                self._failed(error)
            elif response.error is not None:
                self._engine_failed(response.error)
            return
        if self.exchange.stream:
            self._stream(response)
        elif response.error is not None:
            self._engine_failed(response.error)
        elif response.complete:
            self._whole(response)

    def _whole(self, response: Response) -> None:
        exchange, attempt = self.exchange, self.attempt
        assert attempt is not None and self.deadline is not None
        body = response.take()
        attempt.endpoint.vitals.progress += 1
        self.deadline.started()
        exchange.status = response.status
        exchange.first_byte_at = time.monotonic()
        self._close_call(keep=True)
        if self.lane.relay.counts_tokens:
            exchange.prompt_tokens, exchange.completion_tokens = usage_of(body)
        self.host.write_whole(self._head(response, len(body)) + body)
        self._succeeded()

    def _stream(self, response: Response) -> None:
        exchange, attempt = self.exchange, self.attempt
        assert attempt is not None and self.deadline is not None
        chunk = response.take()
        tap = self.tap
        if not self.started:
            if not chunk:
                if response.error is not None:
                    self._engine_failed(response.error)
                elif response.complete:  # llama-cpp-python does this when its generator fails on the request
                    self._close_call(keep=False)
                    self._failed(UpstreamError(f"the engine for {attempt.endpoint.service!r} ended its stream empty"))
                return
            self.started = True
            attempt.endpoint.vitals.progress += 1
            self.deadline.started()
            exchange.status = response.status
            exchange.first_byte_at = time.monotonic()
            if self.watch_first:
                exchange.pool.first_token(attempt, exchange.pool.clock())
            head = self._head(response, None)
        else:
            head = b""
            if chunk:
                attempt.endpoint.vitals.progress += 1
        if chunk and tap is not None:
            chunk = tap.feed(chunk)
        exchange.relayed(chunk)
        if chunk or head:  # a head goes out with the first chunk
            self.host.write(head + framed(chunk) if chunk else head)
        if head and not response.complete and response.error is None:
            response.stream_to(self._relay)  # the next parts go straight through; their end comes back here
        if response.error is not None:
            failure = self.lane.gateway.upstream.failure(attempt.endpoint, response.error, self.deadline)
            exchange.error = UpstreamError(f"{failure.message} (mid-stream)")
            self._close_call(keep=False)
            self._end_stream(sse_error_event(exchange.error))
        elif response.complete:
            self._close_call(keep=True)
            self._end_stream(tap.close() if tap is not None else b"")
        elif self.host.write_paused() and not self.paused:
            self.paused = True  # the client reads slower than the engine writes: stop reading the engine
            assert self.connection is not None
            self.connection.pause()

    def _relay(self, chunk: bytes) -> bool:
        """A stream's part, from the engine connection's callback: False when the client cannot take more now."""
        assert self.attempt is not None
        self.attempt.endpoint.vitals.progress += 1
        if self.tap is not None and not (chunk := self.tap.feed(chunk)):
            return True
        self.exchange.relayed(chunk)
        self.host.write(framed(chunk))
        return not self.host.write_paused()

    def _end_stream(self, last: bytes) -> None:
        if last:
            self.host.write(framed(last))
        self.host.write(b"0\r\n\r\n")
        self._succeeded()

    def _head(self, response: Response, length: int | None) -> bytes:
        return response_head(response, length, self.exchange.request_id, keep_alive=self.host.keep_alive)

    def writable(self) -> None:
        """The client drained what was written: read the engine again."""
        if self.paused and not self.ended and self.connection is not None:
            self.paused = False
            self.connection.resume()

    def _succeeded(self) -> None:
        self._answered()
        self.host.answered()

    def _answered(self) -> None:
        """The client has the whole answer: a success's accounting."""
        self.ended = True
        self.lane.answered += 1
        if self.tap is not None:
            count_stream_usage(self.exchange, self.tap)
        assert self.attempt is not None
        self.lane.gateway.dispatcher.succeeded(self.exchange, self.attempt)
        if self.admission is not None:
            self.admission.done(None)

    def _engine_failed(self, exc: BaseException) -> None:
        """The engine call failed before the answer began."""
        response = self.response
        idle_close = isinstance(exc, ProtocolError) and self.reused and not self.resent
        if idle_close and response is not None and not response.received_any:
            # The engine closed the kept-alive connection while it was idle: sent once more on a new one (http1.py).
            self.resent = True
            self.reused = False
            response.detach()
            if self.connection is not None:
                self.connection.close()
            self.response = None
            self._connect_later()
            return
        assert self.attempt is not None and self.deadline is not None
        error = self.lane.gateway.upstream.failure(self.attempt.endpoint, exc, self.deadline)
        self._close_call(keep=False)
        self._failed(error)

    def _failed(self, error: GatewayError) -> None:
        """This attempt failed before the client got anything: the dispatcher answers it or retries elsewhere."""
        exchange, dispatcher, attempt = self.exchange, self.lane.gateway.dispatcher, self.attempt
        assert attempt is not None
        if isinstance(error, OpenFilesExhausted):
            exchange.pool.abandon(attempt)  # the gateway's own shortage: not the replica's, nor retried
            self._hand_over(raising(error))
            return
        try:
            dispatcher.failed(exchange, attempt, error)
        except GatewayError as final:
            self._hand_over(raising(final))
            return
        self._hand_over(
            lambda send: dispatcher.resume(exchange, send, self.lane.relay, self.lane.prepare, tried=self.tried)
        )

    def _late(self) -> None:
        """The first-byte deadline came (deadline.py)."""
        if self.ended or self.started:
            return
        assert self.deadline is not None and self.deadline.reason is not None
        self._engine_failed(TimeoutError(self.deadline.reason))

    def abandon(self, reason: str) -> None:
        """The engine went away (the endpoint table ends its calls): as relay/http1.py's `_Exchange.abandon`."""
        if self.ended:
            return
        if self.response is not None:
            self.response.fail(Abandoned(reason))  # → _event
        elif not self.started:
            self._engine_failed(Abandoned(reason))

    def client_gone(self) -> None:
        """The client disconnected: end the engine call so the engine stops, and account for a 499 (a success
        when the stream's `[DONE]` had gone out: the engine's end of the stream just had not come yet)."""
        if self.ended:
            return
        self.ended = True
        self._close_call(keep=False)
        if self.exchange.done_sent:
            self._answered()
            return
        if self.attempt is not None:
            self.exchange.pool.abandon(self.attempt)
        if self.admission is not None:
            self.admission.done(asyncio.CancelledError(CLIENT_GONE))

    def _close_call(self, *, keep: bool) -> None:
        """End the engine call: its bookkeeping, and its connection kept for reuse (`keep`) or closed."""
        connection, self.connection = self.connection, None
        if self.response is not None:
            self.response.detach()
        if connection is not None:
            if keep:
                self.lane.gateway.upstream.session.recycle(connection)
            else:
                connection.close()
        if not self.open:
            return
        self.open = False
        assert self.attempt is not None and self.deadline is not None
        self.deadline.started()  # no longer watched
        endpoint = self.attempt.endpoint
        endpoint.vitals.calls.discard(self)
        endpoint.in_flight -= 1
        self.exchange.finished_at = time.monotonic()

    def _hand_over(self, rest: Resume) -> None:
        """Let the ASGI app finish the request with `rest`, accounted for as `Gateway.forward` accounts for it."""
        self.ended = True
        self.lane.handed_over += 1
        admission = self.admission

        async def resume(send: Send) -> None:
            try:
                await rest(send)
            except BaseException as exc:
                if admission is not None:
                    admission.done(exc)
                raise
            if admission is not None:
                admission.done(None)

        self.host.hand_over(self.scope, self.body, resume)

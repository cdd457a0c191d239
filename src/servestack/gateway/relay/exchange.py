"""One request's journey through the gateway, as a per-request state object.

Made by a surface once the request is parsed and its model resolved to a pool (`Exchange.of`), filled
in by the relay (which endpoint, status, first byte, token counts), and read afterwards by whoever
accounts for the request (usage, metrics, tracing, the access log).
"""

from __future__ import annotations

import time
from typing import Any

from servestack.asgi import CHUNK_WRITER_SCOPE, ChunkWriter, Scope, sse_done_in
from servestack.errors import GatewayError
from servestack.gateway.admission.auth import KEY_SCOPE
from servestack.gateway.admission.keys import ApiKey
from servestack.gateway.fleet.endpoint import Endpoint
from servestack.gateway.fleet.names import Target
from servestack.gateway.fleet.pool import Pool
from servestack.gateway.relay.prompt import PromptSize, measure_prompt
from servestack.gateway.relay.request_ids import REQUEST_ID_SCOPE


class Exchange:
    # A plain class, not a dataclass: the compiled build (setup.py) compiles this __init__, where a
    # dataclass's generated one stays interpreted (one per request).
    def __init__(
        self,
        path: str,
        pool: Pool,  # the pool of the served name the request resolved to
        stream: bool,
        body: bytes,  # what goes to the engine: the client's bytes, unless the engine needs the request changed
        payload: dict[str, Any],  # the client's request (parsed once; for Ollama's routes, its OpenAI translation)
        headers: list[tuple[bytes, bytes]],
        *,
        request_id: str = "",  # the client's X-Request-Id, or the gateway's own (request_ids.py)
        upstream_path: str = "",  # the engine route (the route itself, unless the request was translated)
        key: ApiKey | None = None,  # the caller's key, when keys are on
        alias: str | None = None,  # the name the client asked for, when it was an alias of `model`
        keep_alive: float | None = None,  # Ollama's per-request keep_alive in seconds (on-demand services)
        writer: ChunkWriter | None = None,  # the server's fast path for a stream's body
    ) -> None:
        self.path = path
        self.pool = pool
        self.stream = stream
        self.body = body
        self.payload = payload
        self.headers = headers
        self.request_id = request_id
        self.upstream_path = upstream_path or path
        self.key = key
        self.alias = alias
        self.keep_alive = keep_alive
        self.writer = writer
        self.client_body = body  # the body as the client sent it
        self.started = time.monotonic()
        self.endpoint: Endpoint | None = None  # the last one tried
        self.attempts = 0  # endpoints tried: more than one when failures before the first byte were retried
        self.retryable = False  # this attempt's failure before the first byte may go to another replica
        self.status: int | None = None
        self.first_byte_at: float | None = None
        self.finished_at: float | None = None
        self.error: GatewayError | None = None
        self.sent_before = self.last_sent = b""  # a stream's last two parts relayed (`relayed`, `done_sent`)
        # Set by the relay when the gateway counts tokens (usage ledger, metrics, limits, tracing):
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.usage_estimated = False
        self.spans: list[Any] | None = None  # tracing: [gateway span, upstream span]
        self._prompt_size: PromptSize | None = None

    @classmethod
    def of(cls, scope: Scope, target: Target, **fields: Any) -> Exchange:
        """The exchange of the request in `scope` (its route, headers, id and caller's key, as the edge left
        them) going to `target`; `fields` give the rest (`stream`, `body`, `payload`, ...)."""
        fields.setdefault("path", scope["path"])
        return cls(
            pool=target.pool,
            alias=target.alias,
            headers=scope["headers"],
            request_id=scope[REQUEST_ID_SCOPE],
            key=scope.get(KEY_SCOPE),
            writer=scope.get(CHUNK_WRITER_SCOPE),
            **fields,
        )

    @property
    def model(self) -> str:
        """The served name the request goes to (an alias resolved)."""
        return self.pool.model

    @property
    def prompt_size(self) -> PromptSize:
        """The prompt's size in characters and token ids (measured once)."""
        if self._prompt_size is None:
            self._prompt_size = measure_prompt(self.payload)
        return self._prompt_size

    def relayed(self, part: bytes) -> None:
        """A part of a stream went to the client (whole events when the relay taps it for usage, else as the
        engine wrote it): the last two are kept, for `done_sent` to read when the client leaves."""
        if part:
            self.sent_before, self.last_sent = self.last_sent, part

    @property
    def done_sent(self) -> bool:
        """A stream's `data: [DONE]` went out: a client that leaves past it has the whole answer."""
        return self.stream and sse_done_in(self.sent_before, self.last_sent)

    @property
    def ttft(self) -> float | None:
        """Seconds from receiving the request to the first byte of the engine's answer."""
        return None if self.first_byte_at is None else self.first_byte_at - self.started

    @property
    def duration(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started

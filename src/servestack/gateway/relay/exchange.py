"""One request's journey through the gateway, as a per-request state object.

Created when a generation request is parsed, filled in by the relay (which endpoint, status, first
byte), and read afterwards by whoever accounts for the request (usage, metrics, tracing).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from servestack.errors import GatewayError
from servestack.gateway.admission.keys import ApiKey
from servestack.gateway.fleet.endpoint import Endpoint
from servestack.gateway.openai.usage import StreamTap
from servestack.gateway.relay.prompt import PromptSize, measure_prompt


@dataclass
class Exchange:
    path: str
    model: str
    stream: bool
    body: bytes  # what goes to the engine: the client's bytes, unless the engine needs the request changed
    payload: dict[str, Any]  # the client's request (parsed once; for Ollama's routes, its OpenAI translation)
    headers: list[tuple[bytes, bytes]]
    request_id: str = ""  # the client's X-Request-Id, or the gateway's own (request_ids.py)
    upstream_path: str = ""  # the engine route (the route itself, unless the request was translated)
    started: float = field(default_factory=time.monotonic)
    endpoint: Endpoint | None = None  # the last one tried
    attempts: int = 0  # endpoints tried: more than one when failures before the first byte were retried
    retryable: bool = False  # this attempt's failure before the first byte may go to another replica
    status: int | None = None
    first_byte_at: float | None = None
    finished_at: float | None = None
    error: GatewayError | None = None
    # Set by the production pipeline (pipeline.py) when it is on:
    key: ApiKey | None = None
    alias: str | None = None  # the name the client asked for, when it was an alias of `model`
    tap: StreamTap | None = None  # reads token usage off a stream as the relay forwards it
    response: bytes | None = None  # a whole (non-streamed) answer, as relayed
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    usage_estimated: bool = False
    spans: list[Any] | None = None  # tracing: [gateway span, upstream span]
    keep_alive: float | None = None  # Ollama's per-request keep_alive in seconds (on-demand services; loading.py)
    _prompt_size: PromptSize | None = field(default=None, repr=False)
    client_body: bytes = field(default=b"", repr=False)  # the body as the client sent it

    def __post_init__(self) -> None:
        self.client_body = self.body
        self.upstream_path = self.upstream_path or self.path

    @property
    def prompt_size(self) -> PromptSize:
        """The prompt's size in characters and token ids (measured once)."""
        if self._prompt_size is None:
            self._prompt_size = measure_prompt(self.payload)
        return self._prompt_size

    @property
    def ttft(self) -> float | None:
        """Seconds from receiving the request to the first byte of the engine's answer."""
        return None if self.first_byte_at is None else self.first_byte_at - self.started

    @property
    def duration(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started

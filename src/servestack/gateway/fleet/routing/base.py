"""What every routing policy sees and implements: the request to route, one attempt, the Policy contract.

A policy chooses one endpoint among the pool's candidates (ready, not draining, circuit not open),
hears that a request was sent there (`dispatched`) and how the attempt ended (`finished`), and
forgets an endpoint whose engine restarted. `choose` is on the request path: it must not do I/O
or any work that grows with the request history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from servestack.gateway.fleet.routing.prefix import CHARS_PER_TOKEN, block_hashes

if TYPE_CHECKING:
    from servestack.gateway.fleet.endpoint import Endpoint


class RouteRequest:
    """The parts of a request that routing reads, derived once from the already-parsed body."""

    __slots__ = ("_blocks", "_text", "payload")

    def __init__(self, payload: Mapping[str, Any] | None) -> None:
        self.payload = payload
        self._text: str | None = None
        self._blocks: list[int] | None = None

    @property
    def text(self) -> str:
        """The prompt as text (chat messages joined with their roles), the same for the same prefix."""
        if self._text is None:
            self._text = routing_text(self.payload) if self.payload is not None else ""
        return self._text

    @property
    def tokens(self) -> float:
        """The prompt's length in tokens, estimated from its characters."""
        return len(self.text) / CHARS_PER_TOKEN

    @property
    def blocks(self) -> list[int]:
        """Chained hashes of the prompt's whole blocks (see `prefix`)."""
        if self._blocks is None:
            self._blocks = block_hashes(self.text)
        return self._blocks


NO_REQUEST = RouteRequest(None)


class Attempt:
    """One try of a request on one endpoint; policies keep their bookkeeping for it here."""

    __slots__ = (
        "dispatched_at",
        "endpoint",
        "first_token_at",
        "measurable",
        "request",
        "tokens_ahead",
        "uncached_tokens",
    )

    def __init__(self, endpoint: Endpoint, request: RouteRequest, dispatched_at: float) -> None:  # see Exchange
        self.endpoint = endpoint
        self.request = request
        self.dispatched_at = dispatched_at
        self.first_token_at: float | None = None  # streams only, and only for policies that watch first tokens
        self.uncached_tokens = 0.0  # prompt tokens not believed cached on the endpoint
        self.tokens_ahead = 0.0  # uncached tokens of other requests still in prefill there, at dispatch
        self.measurable = False  # sent while the endpoint had a free batch slot: its TTFT measures prefill


class Policy(Protocol):
    name: str
    watches_first_token: bool  # whether `first_token` should be called for streams

    def choose(self, candidates: Sequence[Endpoint], request: RouteRequest) -> Endpoint:
        """One of `candidates` (never empty) for `request`."""
        ...

    def dispatched(self, attempt: Attempt) -> None:
        """The request is being sent to `attempt.endpoint`."""
        ...

    def first_token(self, attempt: Attempt) -> None:
        """A stream's first chunk arrived (`attempt.first_token_at` is set)."""
        ...

    def finished(self, attempt: Attempt, *, ok: bool) -> None:
        """The attempt ended (answered, failed, or cut short)."""
        ...

    def forget(self, endpoint_id: str) -> None:
        """The endpoint's engine restarted or left: drop what was learned about it."""
        ...


class BasePolicy:
    """No-op hooks, for policies that only choose."""

    name = "base"
    watches_first_token = False

    def dispatched(self, attempt: Attempt) -> None:
        return None

    def first_token(self, attempt: Attempt) -> None:
        return None

    def finished(self, attempt: Attempt, *, ok: bool) -> None:
        return None

    def forget(self, endpoint_id: str) -> None:
        return None


def load_of(endpoint: Endpoint) -> float:
    """Requests this gateway has in flight there, plus the engine's own queue from its last scrape."""
    vitals = endpoint.vitals
    return vitals.in_flight + vitals.load.waiting


def routing_text(payload: Mapping[str, Any]) -> str:
    """The prompt of a chat or completion request as one string, cheap to build and stable across turns.

    Chat: each message as `role` + `\\x1f` + text, separated by `\\x1e`, so the next turn of a
    conversation starts with exactly the text of the turn before it.
    """
    messages = payload.get("messages")
    if isinstance(messages, list):
        return "\x1e".join(_message_text(m) for m in messages if isinstance(m, dict))
    prompt = payload.get("prompt")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt:
        first = prompt[0]
        if isinstance(first, str):
            return first  # a batch of prompts routes by its first
        if isinstance(first, int):
            return " ".join(map(str, prompt))  # token ids
        if isinstance(first, list):
            return " ".join(map(str, first))
    return ""


def _message_text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        text = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    else:
        text = ""
    return f"{message.get('role', '')}\x1f{text}"

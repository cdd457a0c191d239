"""Preparing a request for the replica it is tried on: the body that engine accepts, and the stream tap.

Runs for every replica tried (a retry may pick another engine, with another dialect): the service's
request defaults fill in what the request omits (defaults.py), then the request is conformed to the
engine's dialect (conform.py); on a stream, the engine is asked for a usage chunk
when the gateway needs the counts and the engine can send one (the chunk is then removed before the
client sees it, unless the client asked for it too), and an engine that cannot send one is counted by
the gateway, which answers a client's `include_usage` from that count. The body is re-encoded only
when one of these changed the request; otherwise the client's bytes go as they came.
"""

from __future__ import annotations

from typing import Any

import orjson

from servestack.dialect import Dialect
from servestack.gateway.fleet.endpoint import Endpoint
from servestack.gateway.openai.conform import CHAT, COMPLETIONS, conform
from servestack.gateway.openai.defaults import apply_defaults
from servestack.gateway.openai.usage import CountedUsage, StreamTap, estimate_prompt_tokens
from servestack.gateway.relay.exchange import Exchange

STREAM_USAGE_PATHS = frozenset({CHAT, COMPLETIONS})
NATIVE_STREAM_PATHS = frozenset({"/generate"})  # SGLang's: its chunks carry `meta_info` counts


def prepare_attempt(exchange: Exchange, endpoint: Endpoint, *, count_tokens: bool) -> StreamTap | None:
    """Set `exchange.body` for sending it to `endpoint` (400 for what its engine cannot do); the tap a
    byte-for-byte relay reads the stream's usage with, or None when none is needed."""
    request = apply_defaults(exchange.payload, endpoint.defaults, exchange.upstream_path)
    sent = conform(request, exchange.upstream_path, endpoint.dialect, exchange.model)
    tap = None
    if exchange.stream and exchange.upstream_path in STREAM_USAGE_PATHS:
        sent, tap = _stream_usage(exchange, endpoint.dialect, sent, count_tokens)
    elif exchange.stream and count_tokens and exchange.path in NATIVE_STREAM_PATHS:
        tap = StreamTap(drop_usage_event=False)
    if sent is not exchange.payload or not exchange.client_body:
        exchange.body = orjson.dumps(sent)
    else:
        exchange.body = exchange.client_body
    return tap


def _stream_usage(
    exchange: Exchange, dialect: Dialect, sent: dict[str, Any], count_tokens: bool
) -> tuple[dict[str, Any], StreamTap | None]:
    """The request with `include_usage` when it must be asked for, and the stream's tap."""
    translated = exchange.upstream_path != exchange.path  # Ollama's relay reads the counts itself: no tap
    options = sent.get("stream_options")
    asked = isinstance(options, dict) and options.get("include_usage") is True
    if not dialect.stream_usage:
        if translated or not (asked or count_tokens):
            return sent, None
        counted = CountedUsage(estimate_prompt_tokens(sent), chat=exchange.upstream_path == CHAT) if asked else None
        return sent, StreamTap(drop_usage_event=False, counted_usage=counted)
    tap = StreamTap(drop_usage_event=not asked) if not translated and count_tokens else None
    if asked or not (count_tokens or translated):
        return sent, tap
    return {**sent, "stream_options": {**(options if isinstance(options, dict) else {}), "include_usage": True}}, tap

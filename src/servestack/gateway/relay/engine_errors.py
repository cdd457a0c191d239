"""One mapping from an engine's error answer to the gateway's errors, for every API surface.

An engine's non-2xx answer is never relayed as it came: its message is read (OpenAI's `error.message`,
FastAPI's `detail`, or the text), cut before any traceback, stripped of local paths, and raised as the
GatewayError its status means, which the edge renders in OpenAI's or Ollama's shape. So the same engine
error is the same status on /v1 and /api. A 5xx whose message the engine's dialect lists as a request
error (a server that answers its validation errors with 500) is the client's 400, and does not count
against the replica. The engine's whole text is logged, with the request id.
"""

from __future__ import annotations

import logging
import re

import orjson

from servestack.errors import (
    BadRequest,
    ContextLengthExceeded,
    GatewayError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from servestack.gateway.fleet.endpoint import Endpoint

log = logging.getLogger("servestack.gateway")

MESSAGE_LIMIT = 1000
# Where a Python traceback (or the frame lines some servers append to a message) begins.
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|\n\s*File \"")
# An absolute path of two or more parts: only its last part is kept.
PATH = re.compile(r"(?<![\w.:/])/(?:[\w.+@-]+/)+([\w.+@-]+)")


def engine_error(endpoint: Endpoint, status: int, body: bytes, request_id: str) -> GatewayError:
    """The error to answer for `endpoint`'s `status` answer with `body`."""
    said, code, param = _read(body)
    log.warning(
        "request %s: %s answered %d: %s", request_id or "-", endpoint.id, status, body[:4096].decode("utf-8", "replace")
    )
    message = clean(said) or f"the engine answered {status}"
    if status >= 500 and _about_request(endpoint, said):
        return BadRequest(message)
    if status in (400, 422):
        if code == "context_length_exceeded" or "maximum context length" in message:
            return ContextLengthExceeded(message, param=param or "messages")
        return BadRequest(message, param=param)
    if status == 404:
        return NotFound(message)
    if status == 413:
        return PayloadTooLarge(message)
    if status == 429:
        return RateLimited(message, retry_after=1)
    if status < 500:
        return BadRequest(message)
    where = f"the engine for {endpoint.service!r} answered {status}: {message}"
    if status == 503:
        return UpstreamUnavailable(where, retry_after=5)
    if status == 504:
        return UpstreamTimeout(where)
    return UpstreamError(where)


def clean(text: str) -> str:
    """`text` without a traceback or local paths, and not too long."""
    if match := TRACEBACK.search(text):
        text = text[: match.start()]
    text = PATH.sub(r"\1", text).strip()
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT] + " …"


def _about_request(endpoint: Endpoint, message: str) -> bool:
    return any(re.search(pattern, message) for pattern in endpoint.dialect.invalid_request_errors)


def _read(body: bytes) -> tuple[str, str | None, str | None]:
    """(message, code, param) of an error body: OpenAI's `error`, FastAPI's `detail`, `message`, or the text."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[: MESSAGE_LIMIT * 4].decode("utf-8", "replace").strip(), None, None
    if not isinstance(data, dict):
        return str(data), None, None
    error = data.get("error")
    if isinstance(error, dict):
        code, param = error.get("code"), error.get("param")
        return str(error.get("message") or ""), _text(code), _text(param)
    for key in ("error", "detail", "message"):
        if data.get(key):
            return str(data[key]), None, _text(data.get("param"))
    return body.decode("utf-8", "replace"), None, None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None

"""The headers the relay passes on each way: the client's that an engine should see (and the request's id
in the form the engine takes), and the engine's that a byte-for-byte relay returns to the client."""

from __future__ import annotations

from servestack.gateway.fleet.endpoint import Endpoint
from servestack.gateway.relay.exchange import Exchange
from servestack.gateway.relay.http1 import Response
from servestack.gateway.relay.request_ids import for_engine

FORWARDED_REQUEST_HEADERS = (b"accept", b"traceparent", b"tracestate")
RELAYED_RESPONSE_HEADERS = ("Content-Type", "Content-Encoding", "Cache-Control")  # the request id is the gateway's
_RELAYED = frozenset(name.lower().encode() for name in RELAYED_RESPONSE_HEADERS)


def upstream_headers(exchange: Exchange, endpoint: Endpoint) -> dict[str, str]:
    """The headers a request is sent to `endpoint` with: the client's that matter, and its id as the engine takes it."""
    headers = {"Content-Type": "application/json"}
    for name, value in exchange.headers:
        if name in FORWARDED_REQUEST_HEADERS:
            headers[name.decode()] = value.decode("latin-1")
    if exchange.request_id:
        headers["X-Request-Id"] = for_engine(exchange.request_id, endpoint.dialect)
    return headers


def relayed_headers(response: Response) -> list[tuple[bytes, bytes]]:
    """Of an engine's response headers, those a byte-for-byte relay passes on to the client (by lower-case name)."""
    return [(lower, value) for name, value in response.raw_headers if (lower := name.lower()) in _RELAYED]

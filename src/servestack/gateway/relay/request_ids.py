"""Request ids: the client's `X-Request-Id` (or one made here), echoed on the answer, logged, in the
ledger; and the form of it each engine accepts.

Any printable ASCII id of up to `MAX_LENGTH` characters is the client's to choose (`req-abc-123`, what
nginx and many proxies pass through). An engine that accepts only UUIDs gets a UUID made from the id
(the same id gives the same UUID, so its log lines can be found from the gateway's).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import uuid
from collections.abc import Iterable

from servestack.asgi import Message, Send
from servestack.dialect import Dialect
from servestack.errors import BadRequest

HEADER = b"x-request-id"
REQUEST_ID_SCOPE = "servestack.request_id"  # where the edge leaves the id in the ASGI scope
MAX_LENGTH = 128


class RequestIds:
    """Makes ids unique to this gateway process: a random prefix and a counter (cheaper than a UUID)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(4).hex() + "-"
        self._count = itertools.count(1)

    def of(self, headers: Iterable[tuple[bytes, bytes]]) -> str:
        """The client's id, or a new one; 400 for an id that is not 1–MAX_LENGTH printable ASCII characters."""
        for name, value in headers:
            if name == HEADER:
                text = value.decode("latin-1")
                if not (0 < len(text) <= MAX_LENGTH and text.isascii() and text.isprintable()):
                    raise BadRequest(
                        f"X-Request-Id must be 1 to {MAX_LENGTH} printable ASCII characters", param="x-request-id"
                    )
                return text
        return f"{self._prefix}{next(self._count):x}"


def for_engine(request_id: str, dialect: Dialect) -> str:
    """`request_id` as the engine accepts it."""
    if dialect.request_ids == "any":
        return request_id
    try:
        return str(uuid.UUID(request_id))
    except ValueError:
        return str(uuid.UUID(bytes=hashlib.sha256(request_id.encode()).digest()[:16], version=4))


def echoing(send: Send, request_id: str) -> Send:
    """`send`, with `X-Request-Id: request_id` added to the answer's head."""
    header = (HEADER, request_id.encode())

    async def send_with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), header]
        await send(message)

    return send_with_id

"""The callback data path (lane.py) as the server's protocol (protocol.py) sees it: the lane that takes
requests, the request it answers, and the stand-in for uvicorn's request cycle while it does."""

from __future__ import annotations

from typing import Any, Protocol

from servestack.asgi import Scope


class LaneRequest(Protocol):
    """A request the lane is answering (lane_call.py's LaneCall)."""

    def client_gone(self) -> None: ...
    def writable(self) -> None: ...


class LaneTaker(Protocol):
    """The callback data path (lane.py's Lane)."""

    paths: frozenset[bytes]
    max_body_bytes: int

    def take(self, host: Any, scope: Scope, body: bytes) -> LaneRequest | None: ...


class Unset:
    """The `message_event` of a lane request's stand-in cycle: nobody waits on it."""

    def set(self) -> None:
        pass


UNSET = Unset()


class LaneCycle:
    """The connection's current cycle while the lane answers its request: pipelining waits for
    `response_complete`, a disconnect marks it, a shutdown clears `keep_alive`."""

    def __init__(self) -> None:
        self.response_complete = False
        self.disconnected = False
        self.keep_alive = True
        self.message_event = UNSET

"""Serving the gateway app with uvicorn inside the controller's event loop.

The controller owns signals (it must stop engines before exiting), so uvicorn's own signal
capture is switched off, and the listening socket is bound by `listen.py` so that a busy port is a
clear error instead of uvicorn's exit. Connections are accepted by `listener.py` (which answers
those it has no descriptor for) rather than by uvloop's server. Starting raises the process's
open-files limit as far as it goes and logs how many streams that holds (open_files.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import socket
import sys
from collections.abc import Generator

import uvicorn
from uvicorn.server import STARTUP_FAILURE

from servestack.compiled import build_name
from servestack.errors import ServestackError
from servestack.gateway.edge.deadlines import Deadlines
from servestack.gateway.edge.http_connection import DEFAULT_MAX_HEAD_BYTES, ConnectionSettings
from servestack.gateway.edge.lane import Lane
from servestack.gateway.edge.listen import bind_socket
from servestack.gateway.edge.listener import Listener
from servestack.gateway.edge.protocol import GatewayProtocol
from servestack.open_files import OpenFilesLimit, raise_open_files_limit
from servestack.stack import TimeoutsConfig

log = logging.getLogger("servestack.gateway")
FEW_STREAMS = 1000  # below this many, the capacity is logged as a warning
KEEP_ALIVE_SECONDS = 5.0  # uvicorn's default


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, deadlines: Deadlines, head_cap: int, lane: Lane | None) -> None:
        super().__init__(config)
        self.deadlines = deadlines
        self.head_cap = head_cap
        self.lane = lane  # the app's callback data path (lane.py), when it has one
        self.capacity = 0  # the connections it holds at once (set before it starts)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's startup, with a `Listener` accepting on each socket instead of uvloop's server."""
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(STARTUP_FAILURE)
        config, state = self.config, self.server_state

        app_state = self.lifespan.state
        settings = ConnectionSettings(config.loaded_app, state, app_state, self.deadlines, self.head_cap, self.lane)
        make = functools.partial(GatewayProtocol, settings)  # a protocol for each connection
        listeners = [Listener(sock, make, backlog=config.backlog, capacity=self.capacity) for sock in sockets or ()]
        self.servers = listeners  # type: ignore[assignment]  # uvicorn only closes them and waits
        self.started = True


class GatewayServer:
    def __init__(
        self,
        app: object,
        host: str,
        port: int,
        *,
        log_level: str = "warning",
        timeouts: TimeoutsConfig | None = None,
        head_cap: int = DEFAULT_MAX_HEAD_BYTES,
        keep_alive: float = KEEP_ALIVE_SECONDS,
    ) -> None:
        """`head_cap` bounds each request's line and headers (`gateway.limits.max_header_bytes`); an idle
        kept-alive connection is closed after `keep_alive` seconds."""
        self.host = host
        self.port = port
        headers, body = (timeouts.headers, timeouts.body) if timeouts else (None, None)
        self._deadlines = Deadlines(headers, body, keep_alive)
        # uvicorn's Server runs the lifespan, the app's startup and shutdown; connections are edge/protocol.py's
        config = uvicorn.Config(
            app,  # type: ignore[arg-type]
            lifespan="on",
            access_log=False,
            log_level=log_level,
            server_header=False,
            date_header=False,
            proxy_headers=False,  # nothing reads the client's address: no X-Forwarded-For parsing per request
        )
        self._server = _Server(config, self._deadlines, head_cap, getattr(app, "lane", None))
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    async def start(self, sock: socket.socket | None = None) -> OpenFilesLimit:
        """Start serving on `sock` (default: bind host:port now); returns, once connections are accepted,
        the open-files limit it serves under."""
        sock = sock or bind_socket(self.host, self.port)
        self.port = sock.getsockname()[1]
        limit = raise_open_files_limit()
        self._server.capacity = limit.streams
        few = limit.streams < FEW_STREAMS
        log.log(
            logging.WARNING if few else logging.INFO,
            "the gateway (%s) can hold about %d streams at once (open-files limit %d, two descriptors a stream)%s",
            build_name(), limit.streams, limit.soft,
            "; raise the hard limit (ulimit -Hn, LimitNOFILE=) to hold more" if few else "",
        )  # fmt: skip
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise ServestackError(f"the gateway on {self.url} stopped during startup")
            await asyncio.sleep(0.02)
        return limit

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        await self._task
        await self._deadlines.stop()


def settle_heap(young_threshold: int = 10_000) -> None:
    """Tune the garbage collector for a long-running server; call once, after startup.

    What startup allocated (modules, the stack, the plan) lives as long as the process:
    `gc.freeze()` takes it out of every later collection, and a larger young-generation threshold
    makes collections rarer. On the gateway at ~4,000 requests/s the collector's share of the CPU
    went from about 7 % to under 1 %.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(young_threshold, 10, 10)

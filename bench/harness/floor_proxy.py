"""`python floor_proxy.py PORT UPSTREAM_URL`: the least any Python proxy on servestack's stack can cost.

A reference peer, not a gateway: each client connection gets its own upstream connection and the
bytes go through untouched both ways (no HTTP parsing, no routing, no keys, no metrics), on the same
event loop the gateway uses (uvloop). What it spends per request or per stream opened is what
Python, uvloop and the kernel cost before any proxy logic runs: a figure no Python gateway can go
below on this machine (bench/gateway_overhead.py and bench/streams.py name it `python-floor`).
"""

from __future__ import annotations

import asyncio
import resource
import signal
import sys
from urllib.parse import urlsplit

import uvloop


class UpstreamSide(asyncio.Protocol):
    def __init__(self, client: ClientSide) -> None:
        self.client = client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.client.transport.is_closing():
            self.client.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.transport.close()


class ClientSide(asyncio.Protocol):
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.upstream: UpstreamSide | None = None
        self.held: list[bytes] = []  # what the client sent before the upstream connection was made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, upstream = await loop.create_connection(lambda: UpstreamSide(self), self.host, self.port)
        except OSError:
            self.transport.close()
            return
        self.upstream = upstream
        if self.held:
            upstream.transport.write(b"".join(self.held))
            self.held.clear()

    def data_received(self, data: bytes) -> None:
        if self.upstream is None:
            self.held.append(data)
        elif not self.upstream.transport.is_closing():
            self.upstream.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.transport.close()


async def serve(port: int, upstream_url: str) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # two descriptors a stream, as the gateway raises it
    upstream = urlsplit(upstream_url)
    host, upstream_port = upstream.hostname or "127.0.0.1", upstream.port or 80
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ClientSide(host, upstream_port), "127.0.0.1", port, backlog=4096)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print(f"listening on 127.0.0.1:{port}", flush=True)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1]), sys.argv[2]))

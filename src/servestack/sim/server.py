"""Running a simulator: bind its port, serve it with uvicorn, apply the process-level faults.

Start-up mimics vLLM: the port is bound at once (no other process can take it) but only listens
after `slow_start` seconds, so probes meanwhile get "connection refused" — what the supervisor
sees while a real vLLM loads weights. `warmup` then adds SGLang's phase of /health answering 503.
`crash_after_seconds` counts from the start of the process.

`SimServer` serves inside the caller's event loop (tests, benchmarks, several replicas in one
process); `main` is the process entry point behind `python -m servestack.sim` and `servestack sim`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import Callable, Generator, Sequence

import uvicorn

from servestack.errors import EngineError, ServestackError
from servestack.sim.app import EnginePhase, SimApp
from servestack.sim.clock import Clock
from servestack.sim.config import SimConfig, parse_args
from servestack.sim.faults import crash_process
from servestack.sockets import bound_tcp_socket

GRACEFUL_SHUTDOWN_SECONDS = 2  # hung requests must not hold a stopping simulator for long


class _SignalFreeServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class SimServer:
    """One simulated engine serving in the running event loop."""

    def __init__(
        self,
        config: SimConfig,
        *,
        clock: Clock | None = None,
        crash: Callable[[str], None] = crash_process,
        handle_signals: bool = False,
    ) -> None:
        self.config = config
        self.app = SimApp(config, clock=clock, crash=crash)
        self.crash = crash
        self.host = config.host
        self.port = config.port
        uv_config = uvicorn.Config(
            self.app,
            http="httptools",
            lifespan="off",
            access_log=False,
            log_level="warning",
            server_header=False,
            date_header=False,
            backlog=4096,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        )
        self._server = uvicorn.Server(uv_config) if handle_signals else _SignalFreeServer(uv_config)
        self._task: asyncio.Task[None] | None = None
        self._timers: list[asyncio.TimerHandle] = []

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind the port and start serving. Returns once listening, or at once when `slow_start` is set."""
        sock = bind_socket(self.host, self.port)
        self.port = sock.getsockname()[1]
        if self.config.replica is None:
            self.app.name_replica(f"{self.host}:{self.port}")
        loop = asyncio.get_running_loop()
        if self.config.crash_after_seconds is not None:
            seconds = self.config.crash_after_seconds
            self._timers.append(loop.call_later(seconds, self.crash, f"crash_after_seconds={seconds}"))
        if self.config.warmup > 0:
            self.app.phase = EnginePhase.WARMING_UP
        self._task = asyncio.create_task(self._serve(sock))
        if self.config.slow_start == 0:
            await self.wait_listening()

    async def wait_listening(self) -> None:
        assert self._task is not None, "start() first"
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise EngineError(f"the simulator on {self.url} stopped during startup")
            await asyncio.sleep(0.01)

    async def wait(self) -> None:
        """Serve until the server stops (a signal, in a process that handles them)."""
        assert self._task is not None, "start() first"
        await self._task

    async def stop(self) -> None:
        """Stop at once, like an engine going down: open connections are cut, in-flight requests end."""
        for timer in self._timers:
            timer.cancel()
        if self._task is None:
            return
        self._server.should_exit = True
        # Aborting the transports makes every handler see a disconnect and return, so the shutdown
        # does not sit out the graceful timeout for streams or hung requests.
        for connection in list(self._server.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        if not self._server.started:
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _serve(self, sock: socket.socket) -> None:
        if self.config.slow_start > 0:
            await asyncio.sleep(self.config.slow_start)
        if self.config.warmup > 0:
            self._timers.append(asyncio.get_running_loop().call_later(self.config.warmup, self._warmed_up))
        await self._server.serve(sockets=[sock])

    def _warmed_up(self) -> None:
        self.app.phase = EnginePhase.READY


def bind_socket(host: str, port: int) -> socket.socket:
    try:
        return bound_tcp_socket(host, port)
    except OSError as exc:
        raise EngineError(f"the simulator cannot listen on {host}:{port}: {exc.strerror}") from None


async def serve_forever(config: SimConfig) -> None:
    server = SimServer(config, handle_signals=True)
    await server.start()
    mode = "instant" if config.instant else f"time scale {config.time_scale:g}"
    if config.slow_start > 0:
        print(f"sim: port {server.port} bound; listening in {config.slow_start:g}s", file=sys.stderr, flush=True)
        await server.wait_listening()
    print(
        f"sim: serving {', '.join(config.models)} on {server.url} as replica {server.app.replica} ({mode})",
        file=sys.stderr,
        flush=True,
    )
    await server.wait()


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m servestack.sim") -> None:
    """`python -m servestack.sim [flags]`: run one simulator in the foreground until SIGINT/SIGTERM."""
    try:
        config = parse_args(sys.argv[1:] if argv is None else argv, prog=prog)
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(serve_forever(config))
    except ServestackError as error:
        print(f"error: {error.message}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop

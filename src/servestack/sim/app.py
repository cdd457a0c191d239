"""The simulator's HTTP face: vLLM's routes on one raw ASGI callable.

    POST /v1/chat/completions, /v1/completions   generation (whole or SSE), after fault injection
    GET  /v1/models                              the served names
    GET  /health                                 200 when ready, 503 while warming up (empty body)
    GET  /metrics                                Prometheus text, vLLM metric names
    GET  /version                                {"version": ...}
    GET  /sim/state                              queue, batch, KV and prefix-cache figures (JSON)
    GET  /sim/faults, POST /sim/faults           read or change the faults in force (JSON)
    POST /sleep?level=1, POST /wake_up           vLLM's sleep mode (with --enable-sleep-mode): asleep, generation
    GET  /is_sleeping                            answers 503; a wake takes --wake-time seconds

Every answer carries `x-sim-replica: NAME`; generation answers also name the replica in
`system_fingerprint` (`sim:NAME`), which survives proxies that drop unknown headers.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import secrets
from collections.abc import Awaitable, Callable
from enum import Enum

import orjson

from servestack import __version__
from servestack.asgi import Headers, Receive, Scope, Send, read_body, send_bytes, send_error, send_json
from servestack.errors import BadRequest, GatewayError, MethodNotAllowed, ModelNotFound, NotFound, UpstreamUnavailable
from servestack.sim.asgi import MAX_BODY_BYTES, cancel_on_disconnect, until_disconnect
from servestack.sim.clock import Clock, ScaledClock
from servestack.sim.config import SimConfig
from servestack.sim.faults import FaultAction, FaultInjector, Faults, crash_process
from servestack.sim.generation import Generator, Limits
from servestack.sim.metrics import CONTENT_TYPE, Load, SimMetrics
from servestack.sim.protocol import AnswerWriter, Route, parse_request
from servestack.sim.radix import RadixCache
from servestack.sim.scheduler import LatencyModel, Scheduler
from servestack.sim.tokenizer import Tokenizer

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


class EnginePhase(Enum):
    WARMING_UP = "warming_up"
    READY = "ready"
    SLEEPING = "sleeping"


class SimApp:
    """One simulated engine. `clock` and `crash` are test seams; the server names the replica once bound."""

    def __init__(
        self, config: SimConfig, *, clock: Clock | None = None, crash: Callable[[str], None] = crash_process
    ) -> None:
        self.config = config
        self.phase = EnginePhase.READY
        self.clock = clock or ScaledClock(config.time_scale)
        rng = random.Random(config.seed)
        self.cache = RadixCache(config.prefix_cache_capacity)
        model = LatencyModel(config.prefill_rate, config.decode_rate, config.max_running, config.kv_capacity)
        self.scheduler = Scheduler(model, self.cache, self.clock)
        self.faults = FaultInjector(
            Faults(config.error_rate, config.hang, config.crash_after_requests), random.Random(rng.random()), crash
        )
        self.metrics = SimMetrics(config.models[0], self._load)
        self.generator = Generator(
            Limits(config.max_model_len, config.default_max_tokens),
            self.scheduler, Tokenizer(), self.metrics, self.clock, rng,
        )  # fmt: skip
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(4) + "-"  # unique across replicas, whatever their seed
        self.name_replica(config.replica or f"{config.host}:{config.port}")
        self._routes: dict[tuple[str, str], Handler] = {
            ("POST", Route.CHAT.value): self._generate,
            ("POST", Route.COMPLETION.value): self._generate,
            ("GET", "/v1/models"): self._models,
            ("GET", "/health"): self._health,
            ("GET", "/metrics"): self._metrics,
            ("GET", "/version"): self._version,
            ("GET", "/sim/state"): self._state,
            ("GET", "/sim/faults"): self._get_faults,
            ("POST", "/sim/faults"): self._set_faults,
        }
        if config.enable_sleep_mode:
            self._routes[("POST", "/sleep")] = self._sleep
            self._routes[("POST", "/wake_up")] = self._wake_up
            self._routes[("GET", "/is_sleeping")] = self._is_sleeping

    def name_replica(self, name: str) -> None:
        self.replica = name
        self.fingerprint = f"sim:{name}"
        self._headers: Headers = [(b"x-sim-replica", name.encode())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # uvicorn runs with lifespan off; websockets are not served
        handler = self._routes.get((scope["method"], scope["path"]))
        try:
            if handler is None:
                raise self._no_route(scope)
            await handler(scope, receive, send)
        except GatewayError as error:
            await send_error(send, error, headers=self._headers)

    async def _generate(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = parse_request(Route(scope["path"]), await read_body(receive, MAX_BODY_BYTES))
        if request.model is not None and request.model not in self.config.models:
            raise ModelNotFound(f"The model `{request.model}` does not exist.", param="model")
        if self.phase is not EnginePhase.READY:
            raise UpstreamUnavailable(f"the simulated engine is {self.phase.value.replace('_', ' ')}")
        action = self.faults.on_request()
        if action is FaultAction.FAIL:
            raise GatewayError(f"simulated engine failure (error_rate={self.faults.faults.error_rate})")
        if action is FaultAction.HANG:
            await until_disconnect(receive)
            return
        model = request.model or self.config.models[0]
        writer = AnswerWriter(request.route, self._id_prefix + str(next(self._ids)), model, self.fingerprint)
        if self.config.instant:
            await self.generator.instant(request, writer, send, self._headers)
        else:
            await cancel_on_disconnect(self.generator.simulate(request, writer, send, self._headers), receive)

    async def _models(self, scope: Scope, receive: Receive, send: Send) -> None:
        root = self.config.root or self.config.models[0]
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "servestack-sim", "root": root,
             "parent": None, "max_model_len": self.config.max_model_len}
            for name in self.config.models
        ]  # fmt: skip
        await send_json(send, 200, {"object": "list", "data": data}, self._headers)

    async def _health(self, scope: Scope, receive: Receive, send: Send) -> None:
        status = 503 if self.phase is EnginePhase.WARMING_UP else 200  # asleep, vLLM's engine is still alive
        await send_bytes(send, status, b"", self._headers)

    async def _metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_bytes(send, 200, self.metrics.render(), [(b"content-type", CONTENT_TYPE.encode()), *self._headers])

    async def _version(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, {"version": f"servestack-sim {__version__}"}, self._headers)

    async def _state(self, scope: Scope, receive: Receive, send: Send) -> None:
        scheduler = self.scheduler
        state = {
            "replica": self.replica,
            "phase": self.phase.value,
            "waiting": len(scheduler.waiting),
            "running": len(scheduler.running),
            "kv_used_tokens": scheduler.kv_used,
            "kv_capacity_tokens": scheduler.model.kv_capacity,
            "prefix_cache_tokens": self.cache.size,
            "prefix_cache_capacity_tokens": self.cache.capacity,
            "generation_requests": self.faults.requests,
            "sim_time": self.clock.now(),
        }
        await send_json(send, 200, state, self._headers)

    async def _sleep(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Level 1 or 2: the weights would go to host memory (or be dropped) and the KV cache freed."""
        if self.phase is EnginePhase.READY:
            self.phase = EnginePhase.SLEEPING
        await send_bytes(send, 200, b"", self._headers)

    async def _wake_up(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answers once awake, as vLLM does: after `wake_time` seconds of copying weights back."""
        if self.phase is EnginePhase.SLEEPING:
            await asyncio.sleep(self.config.wake_time)
            self.phase = EnginePhase.READY
        await send_bytes(send, 200, b"", self._headers)

    async def _is_sleeping(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, {"is_sleeping": self.phase is EnginePhase.SLEEPING}, self._headers)

    async def _get_faults(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, self.faults.faults.as_dict(), self._headers)

    async def _set_faults(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            changes = orjson.loads(await read_body(receive, MAX_BODY_BYTES))
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"the request body is not valid JSON: {exc}") from None
        if not isinstance(changes, dict):
            raise BadRequest("the request body must be a JSON object of faults")
        self.faults.update(changes)
        await send_json(send, 200, self.faults.faults.as_dict(), self._headers)

    def _load(self) -> Load:
        scheduler = self.scheduler
        return Load(len(scheduler.waiting), len(scheduler.running), scheduler.kv_usage)

    def _no_route(self, scope: Scope) -> GatewayError:
        path, method = scope["path"], scope["method"]
        if any(p == path for _, p in self._routes):
            return MethodNotAllowed(f"method {method} is not allowed on {path}")
        return NotFound(f"no route {method} {path}")

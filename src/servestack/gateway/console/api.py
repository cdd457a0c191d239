"""The console's JSON admin routes; the page reads nothing else, and the CLI could read the same.

    GET  /admin/console             who the caller is to the console, and the gateway's rules (never a secret)
    GET  /admin/overview            services and replicas (state, node, GPUs, uptime, restarts, last error and its
                                    log tail), on-demand use, each GPU's memory by the plan beside NVML's
    GET  /admin/traffic?since=N     the traffic points after N (traffic.py)
    GET  /admin/plan                `plan --json` of the running stack
    GET  /admin/plan/explore?service=S   `plan --explore-tp S --json`
    GET  /admin/logs?service=S[&replica=N][&lines=N]   an engine's log as server-sent events, then followed
    POST /admin/actions             {"service", "action": start|stop|restart|load|unload} → 202 and its record
    GET  /admin/actions             the actions taken from the console, newest first

Reading needs what access.py says; so does acting. Keys and usage are admin.py's routes.
"""

from __future__ import annotations

from dataclasses import asdict

import orjson

from servestack.asgi import Handler, Receive, Scope, Send, query, read_json, send_json
from servestack.errors import BadRequest, GatewayError, NotFound, PlanError, ServestackError, StateError
from servestack.gateway.console.access import ConsoleAccess
from servestack.gateway.console.actions import ActionLog
from servestack.gateway.console.source import ACTIONS, ConsoleSource, LogLine
from servestack.gateway.console.traffic import TrafficHistory

MAX_BODY = 4096
DEFAULT_LOG_LINES = 200
MAX_LOG_LINES = 5000
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
NO_INSTANCE = "this gateway runs without servestack's controller (`servestack up` serves the console's data)"


class ConsoleApi:
    def __init__(self, access: ConsoleAccess, source: ConsoleSource | None, traffic: TrafficHistory | None) -> None:
        self.access = access
        self.source = source
        self.traffic = traffic
        self.actions = ActionLog(source) if source is not None else None

    def routes(self) -> dict[tuple[str, str], Handler]:
        return {
            ("GET", "/admin/console"): self._session,
            ("GET", "/admin/overview"): self._overview,
            ("GET", "/admin/traffic"): self._traffic,
            ("GET", "/admin/plan"): self._plan,
            ("GET", "/admin/plan/explore"): self._explore,
            ("GET", "/admin/logs"): self._logs,
            ("POST", "/admin/actions"): self._act,
            ("GET", "/admin/actions"): self._actions,
        }

    async def stop(self) -> None:
        if self.actions is not None:
            await self.actions.stop()

    async def _session(self, scope: Scope, receive: Receive, send: Send) -> None:
        session = self.access.session(scope)
        session.update(instance=self.source is not None, metrics=self.traffic is not None)
        await send_json(send, 200, session)

    async def _overview(self, scope: Scope, receive: Receive, send: Send) -> None:
        source = self._source(scope)
        await send_json(send, 200, await source.overview())

    async def _traffic(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.access.check_read(scope)
        if self.traffic is None:
            raise NotFound("the gateway's metrics are off (gateway.metrics.enabled: false), so is the traffic page")
        since = _int(query(scope).get("since", "0"), "since")
        await send_json(send, 200, self.traffic.since(since))

    async def _plan(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, self._source(scope).plan())

    async def _explore(self, scope: Scope, receive: Receive, send: Send) -> None:
        source = self._source(scope)
        service = query(scope).get("service")
        if not service:
            raise BadRequest("say which service to explore: ?service=NAME", param="service")
        try:
            explored = source.explore_tp(service)
        except (PlanError, StateError) as error:
            raise _as_http(error) from None
        await send_json(send, 200, explored)

    async def _logs(self, scope: Scope, receive: Receive, send: Send) -> None:
        source = self._source(scope)
        params = query(scope)
        service = params.get("service")
        if not service:
            raise BadRequest("say whose log: ?service=NAME", param="service")
        replica = _int(params["replica"], "replica") if params.get("replica") else None
        lines = min(_int(params.get("lines", str(DEFAULT_LOG_LINES)), "lines"), MAX_LOG_LINES)
        try:
            batches = source.log_lines(service, replica, lines)
        except StateError as error:
            raise _as_http(error) from None
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        async for batch in batches:
            await send({"type": "http.response.body", "body": _events(batch), "more_body": True})
        await send({"type": "http.response.body", "body": b"event: end\ndata: {}\n\n"})

    async def _act(self, scope: Scope, receive: Receive, send: Send) -> None:
        by = self.access.check_act(scope)
        if self.actions is None or self.source is None:
            raise NotFound(NO_INSTANCE)
        request = await read_json(receive, MAX_BODY)
        service, action = request.get("service"), request.get("action")
        if action not in ACTIONS:
            raise BadRequest(f"'action' is one of {', '.join(ACTIONS)}", param="action")
        if service not in self.source.service_names():
            known = ", ".join(self.source.service_names())
            raise NotFound(f"no service {service!r} in the running stack (services: {known})", param="service")
        record = self.actions.begin(service, action, by)
        await send_json(send, 202, {"action": asdict(record)})

    async def _actions(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.access.check_read(scope)
        await send_json(send, 200, {"actions": self.actions.describe() if self.actions is not None else []})

    def _source(self, scope: Scope) -> ConsoleSource:
        self.access.check_read(scope)
        if self.source is None:
            raise NotFound(NO_INSTANCE)
        return self.source


def _events(batch: list[LogLine]) -> bytes:
    """One `line` event per log line; an empty batch is a comment that keeps proxies from closing the stream."""
    if not batch:
        return b": quiet\n\n"
    return b"".join(b"data: " + orjson.dumps({"replica": x.replica, "text": x.text}) + b"\n\n" for x in batch)


def _int(value: str, name: str) -> int:
    if not value.isdigit():
        raise BadRequest(f"'{name}' must be a whole number, not {value!r}", param=name)
    return int(value)


def _as_http(error: ServestackError) -> GatewayError:
    message = f"{error.message} ({error.fix})" if error.fix else error.message
    return NotFound(message) if isinstance(error, StateError) else BadRequest(message)

"""Assembling a production gateway from the stack file's `gateway:` section and the settings.

The one place that decides which parts of the pipeline exist: a part switched off in the stack
file is simply not built, so it costs nothing per request. Test seams (a metrics registry, a
tracer provider with an in-memory exporter, clocks) come in as parameters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry

from servestack.gateway.admission.auth import KeyRing
from servestack.gateway.admission.keys import KeyStore
from servestack.gateway.admission.limits import KeyLimiter
from servestack.gateway.admission.queues import ModelQueues
from servestack.gateway.console import Console, ConsoleAccess, ConsoleSource
from servestack.gateway.edge.admin import AdminApi, metrics_handler
from servestack.gateway.edge.app import Gateway, Handler
from servestack.gateway.edge.pipeline import Pipeline
from servestack.gateway.fleet.table import EndpointTable
from servestack.gateway.ollama.admin import ModelAdmin
from servestack.gateway.relay.loading import Loader, LoadGate
from servestack.gateway.relay.upstream import Upstream
from servestack.gateway.telemetry.access_log import AccessLog
from servestack.gateway.telemetry.engine_metrics import EngineMetricsExport
from servestack.gateway.telemetry.loading_metrics import LoadingCollector, LoadStats
from servestack.gateway.telemetry.metrics import GatewayMetrics, TableCollector
from servestack.gateway.telemetry.tracing import Tracing, build_tracer_provider
from servestack.gateway.telemetry.usage import UsageLedger
from servestack.settings import Settings
from servestack.stack import GatewayConfig

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider


class MeteredLoader(Loader, Protocol):
    """The controller's loader, with the statistics /metrics reports."""

    stats: LoadStats


def build_gateway(
    table: EndpointTable,
    config: GatewayConfig,
    settings: Settings,
    *,
    registry: CollectorRegistry | None = None,
    tracer_provider: TracerProvider | None = None,
    clock: Callable[[], float] = time.monotonic,
    loader: MeteredLoader | None = None,
    models: ModelAdmin | None = None,
    console_source: ConsoleSource | None = None,
) -> Gateway:
    """The gateway for `config` in front of `table`'s endpoints; `loader` loads on-demand services,
    `models` is the running instance's model management (ollama/admin.py); `console_source` is the running
    instance as the console at /ui reads and steers it."""
    admin_secret = settings.admin_key.get_secret_value() if settings.admin_key is not None else None
    keys = None
    if config.auth.enabled or admin_secret:
        keys = KeyRing(KeyStore(settings.keys_db), required=config.auth.enabled, admin_secret=admin_secret)
    queues = None
    if config.limits.queue is not None or config.limits.model_queues:
        queues = ModelQueues(config.limits.queue, config.limits.model_queues)
    ledger = None
    if config.usage.enabled:
        ledger = UsageLedger(settings.usage_db, flush_interval=config.usage.flush_interval)
    gate = _load_gate(config, loader)
    routes: dict[tuple[str, str], Handler] = {}
    metrics = None
    if config.metrics.enabled:
        registry = registry or CollectorRegistry()
        metrics = _register_metrics(registry, table, queues, gate, loader)
        routes[("GET", "/metrics")] = metrics_handler(registry)
    routes.update(AdminApi(keys, settings.usage_db if ledger is not None else None).routes())

    if tracer_provider is None and config.tracing is not None:
        tracer_provider = build_tracer_provider(config.tracing)
    access_log = None
    if config.logs.format == "json":
        access_log = AccessLog(_log_path(config.logs.path, settings))
    pipeline = Pipeline(
        keys=keys,
        limiter=KeyLimiter(clock) if keys is not None else None,
        queues=queues,
        ledger=ledger,
        metrics=metrics,
        tracing=Tracing(tracer_provider) if tracer_provider is not None else None,
        access_log=access_log,
        clock=clock,
    )
    console = _console(config, console_source, metrics, admin_enabled=admin_secret is not None)
    if console is not None:
        routes.update(console.routes())
    return Gateway(
        table,
        upstream=Upstream(
            connect_timeout=config.timeouts.connect,
            idle_timeout=config.timeouts.idle,
            first_byte_timeout=config.timeouts.first_byte,
        ),
        max_body_bytes=config.limits.max_body_bytes,
        pipeline=pipeline,
        aliases=config.aliases,
        routes=routes,
        gate=gate,
        models=models,
        public=console.public if console is not None else (),
        background=[console] if console is not None else (),
        home=console.home if console is not None else None,
    )


def _load_gate(config: GatewayConfig, loader: MeteredLoader | None) -> LoadGate | None:
    """What holds requests for on-demand services while `loader` loads them (None: there are none)."""
    if loader is None:
        return None
    return LoadGate(
        loader,
        timeout=config.load_timeout,
        max_waiting=config.load_max_waiting,
        keepalive=config.load_keepalive,
        on_wait=loader.stats.request_waited,
    )


def _register_metrics(
    registry: CollectorRegistry,
    table: EndpointTable,
    queues: ModelQueues | None,
    gate: LoadGate | None,
    loader: MeteredLoader | None,
) -> GatewayMetrics:
    """The gateway's own metrics and the collectors /metrics renders at scrape time, in `registry`."""
    metrics = GatewayMetrics(registry)  # registers itself
    registry.register(TableCollector(table, queues))
    registry.register(EngineMetricsExport(table))
    if gate is not None and loader is not None:
        registry.register(LoadingCollector(gate, loader.stats))
    return metrics


def _console(
    config: GatewayConfig, source: ConsoleSource | None, metrics: GatewayMetrics | None, *, admin_enabled: bool
) -> Console | None:
    """The web console at /ui, when the stack turns it on."""
    if not config.console.enabled:
        return None
    access = ConsoleAccess(config.console, auth_required=config.auth.enabled, admin_enabled=admin_enabled)
    return Console(access, source, metrics=metrics)


def _log_path(path: str | None, settings: Settings) -> Path | None:
    if path == "-":
        return None  # stderr
    return Path(path).expanduser() if path else settings.logs_dir / "gateway.jsonl"

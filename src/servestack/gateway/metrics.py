"""The gateway's Prometheus metrics: requests, latencies, tokens, in-flight, replica health.

Per request the cost is a handful of O(1) updates on label children resolved once per model and
cached (`_Series`), never a `labels()` lookup. Replica health and queue depth are read from the
endpoint table when Prometheus scrapes, so they cost nothing per request. Metrics live in a
registry the gateway owns (no process-global state).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from servestack.gateway.endpoints import EndpointTable
from servestack.gateway.exchange import Exchange
from servestack.gateway.limits import ModelQueues

TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
E2E_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
UNKNOWN_MODEL = "unknown"  # requests for names nobody serves: one series, not one per typo


class _Series:
    """One model's label children, resolved once."""

    __slots__ = ("completion", "e2e", "in_flight", "itl", "metrics", "model", "prompt", "statuses", "ttft")

    def __init__(self, metrics: GatewayMetrics, model: str) -> None:
        self.metrics = metrics
        self.model = model
        self.statuses: dict[int, Any] = {}
        self.ttft = metrics.ttft.labels(model)
        self.itl = metrics.itl.labels(model)
        self.e2e = metrics.e2e.labels(model)
        self.prompt = metrics.tokens.labels(model, "prompt")
        self.completion = metrics.tokens.labels(model, "completion")
        self.in_flight = metrics.in_flight.labels(model)

    def status(self, status: int) -> Any:
        child = self.statuses.get(status)
        if child is None:
            child = self.statuses[status] = self.metrics.requests.labels(self.model, str(status))
        return child


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry, *, known: Callable[[str], bool]) -> None:
        self.registry = registry
        self.known = known
        self.requests = Counter(
            "servestack_requests", "Requests answered, by model and status.", ["model", "status"], registry=registry
        )
        self.ttft = Histogram(
            "servestack_time_to_first_token_seconds",
            "From the request's arrival to the first byte of the engine's answer.",
            ["model"],
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self.itl = Histogram(
            "servestack_inter_token_latency_seconds",
            "Mean gap between streamed tokens, one observation per streamed request.",
            ["model"],
            buckets=ITL_BUCKETS,
            registry=registry,
        )
        self.e2e = Histogram(
            "servestack_request_duration_seconds",
            "From the request's arrival to the end of its answer.",
            ["model"],
            buckets=E2E_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter(
            "servestack_tokens", "Tokens in (prompt) and out (completion).", ["model", "kind"], registry=registry
        )
        self.in_flight = Gauge(
            "servestack_requests_in_flight", "Requests being answered now.", ["model"], registry=registry
        )
        self.auth_failures = Counter(
            "servestack_auth_failures", "Requests refused for a missing, wrong or expired key.", registry=registry
        )
        self._series: dict[str, _Series] = {}

    def series(self, model: str) -> _Series:
        series = self._series.get(model)
        if series is None:
            label = model if self.known(model) else UNKNOWN_MODEL
            series = self._series.get(label)
            if series is None:
                series = self._series[label] = _Series(self, label)
        return series

    def observe(self, exchange: Exchange, series: _Series, *, in_flight: bool = True) -> None:
        """Account for a finished exchange; `in_flight`: the caller had raised the in-flight gauge."""
        if in_flight:
            series.in_flight.dec()
        series.status(exchange.status or 0).inc()
        if exchange.finished_at is not None:
            series.e2e.observe(exchange.finished_at - exchange.started)
        if exchange.first_byte_at is None:
            return
        series.ttft.observe(exchange.first_byte_at - exchange.started)
        if exchange.prompt_tokens:
            series.prompt.inc(exchange.prompt_tokens)
        completion = exchange.completion_tokens
        if completion:
            series.completion.inc(completion)
            if exchange.stream and completion > 1 and exchange.finished_at is not None:
                series.itl.observe((exchange.finished_at - exchange.first_byte_at) / (completion - 1))


class TableCollector(Collector):
    """Replica health and queue depth, read from the gateway's own state at scrape time."""

    def __init__(self, table: EndpointTable, queues: ModelQueues | None) -> None:
        self.table = table
        self.queues = queues

    def collect(self) -> Iterator[Metric]:
        labels = ["service", "replica", "engine"]
        ready = GaugeMetricFamily("servestack_replica_ready", "1 when the replica takes requests.", labels=labels)
        busy = GaugeMetricFamily("servestack_replica_in_flight", "Requests at the replica.", labels=labels)
        for endpoint in self.table.endpoints():
            values = [endpoint.service, endpoint.id, endpoint.engine]
            ready.add_metric(values, 1.0 if endpoint.ready else 0.0)
            busy.add_metric(values, float(endpoint.in_flight))
        yield ready
        yield busy
        if self.queues is not None:
            waiting = GaugeMetricFamily("servestack_queue_waiting", "Requests waiting.", labels=["model"])
            active = GaugeMetricFamily("servestack_queue_active", "Requests past the queue.", labels=["model"])
            for model, queue in self.queues.items():
                waiting.add_metric([model], float(queue.waiting))
                active.add_metric([model], float(queue.active))
            yield waiting
            yield active

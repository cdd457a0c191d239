"""The gateway's Prometheus metrics: requests, latencies, tokens, in-flight, replica health.

The gateway serves requests on one event loop thread, so per-request updates are plain integer
and float additions on a per-model `_Series` resolved once (a histogram observation is one
bisect): no lock, no `labels()` lookup, about a microsecond per request. The values become
Prometheus families only when /metrics is scraped (`GatewayMetrics.collect`). Replica health and
queue depth are read from the endpoint table at scrape time, so they cost nothing per request.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from servestack.gateway.admission.queues import ModelQueues
from servestack.gateway.fleet.table import EndpointTable
from servestack.gateway.relay.exchange import Exchange
from servestack.gateway.telemetry.engine_metrics import LABELS, replica_labels

TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
E2E_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
UNKNOWN_MODEL = "unknown"  # requests for names nobody serves: one series, not one per typo


class Histogram:
    """Observations per bucket (not cumulative; the last bucket is +Inf) and their sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # bucket i holds bounds[i-1] < v <= bounds[i]
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        buckets, total = [], 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), list(self.counts), strict=True):
            total += count
            buckets.append((bound, float(total)))
        return buckets


class _Series:
    """One model's numbers."""

    __slots__ = ("completion", "e2e", "in_flight", "itl", "model", "prompt", "statuses", "ttft")

    def __init__(self, model: str) -> None:
        self.model = model
        self.statuses: dict[int, int] = {}
        self.ttft = Histogram(TTFT_BUCKETS)
        self.itl = Histogram(ITL_BUCKETS)
        self.e2e = Histogram(E2E_BUCKETS)
        self.prompt = 0
        self.completion = 0
        self.in_flight = 0


class GatewayMetrics(Collector):
    """Request metrics by model; registered in (and served from) the gateway's own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.auth_failures = 0
        self._series: dict[str, _Series] = {}
        registry.register(self)

    def series(self, model: str) -> _Series:
        """The numbers of a served model (names are resolved before admission: only served names come here)."""
        series = self._series.get(model)
        if series is None:
            series = self._series[model] = _Series(model)
        return series

    def refused(self, status: int, *, unknown_model: bool) -> None:
        """A request turned away before admission: a bad key, or a model nobody serves (model="unknown")."""
        if not unknown_model:
            self.auth_failures += 1
            return
        statuses = self.series(UNKNOWN_MODEL).statuses
        statuses[status] = statuses.get(status, 0) + 1

    def observe(self, exchange: Exchange, series: _Series, *, in_flight: bool = True) -> None:
        """Account for a finished exchange; `in_flight`: the caller had counted it as in flight."""
        if in_flight:
            series.in_flight -= 1
        status = exchange.status or 0
        series.statuses[status] = series.statuses.get(status, 0) + 1
        finished, first_byte = exchange.finished_at, exchange.first_byte_at
        if finished is not None:
            series.e2e.observe(finished - exchange.started)
        if first_byte is None:
            return
        series.ttft.observe(first_byte - exchange.started)
        if exchange.prompt_tokens:
            series.prompt += exchange.prompt_tokens
        completion = exchange.completion_tokens
        if completion:
            series.completion += completion
            if exchange.stream and completion > 1 and finished is not None:
                series.itl.observe((finished - first_byte) / (completion - 1))

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "servestack_requests", "Requests answered, by model and status.", labels=["model", "status"]
        )
        tokens = CounterMetricFamily("servestack_tokens", "Prompt and completion tokens.", labels=["model", "kind"])
        in_flight = GaugeMetricFamily("servestack_requests_in_flight", "Requests being answered now.", labels=["model"])
        histograms = [
            ("ttft", "servestack_time_to_first_token_seconds", "From arrival to the engine's first byte."),
            ("itl", "servestack_inter_token_latency_seconds", "Mean gap between streamed tokens (per stream)."),
            ("e2e", "servestack_request_duration_seconds", "From arrival to the end of the answer."),
        ]
        families = {attr: HistogramMetricFamily(name, doc, labels=["model"]) for attr, name, doc in histograms}
        for model, series in list(self._series.items()):
            for status, count in list(series.statuses.items()):
                requests.add_metric([model, str(status)], count)
            tokens.add_metric([model, "prompt"], series.prompt)
            tokens.add_metric([model, "completion"], series.completion)
            in_flight.add_metric([model], series.in_flight)
            for attr, family in families.items():
                histogram: Histogram = getattr(series, attr)
                buckets = histogram.cumulative()
                family.add_metric([model], buckets=buckets, sum_value=histogram.sum)
        yield requests
        yield tokens
        yield in_flight
        yield from families.values()
        failures = CounterMetricFamily("servestack_auth_failures", "Requests refused for a missing or bad key.")
        failures.add_metric([], self.auth_failures)
        yield failures


class TableCollector(Collector):
    """Replica health and queue depth, read from the gateway's own state at scrape time."""

    def __init__(self, table: EndpointTable, queues: ModelQueues | None) -> None:
        self.table = table
        self.queues = queues

    def collect(self) -> Iterator[Metric]:
        ready = GaugeMetricFamily("servestack_replica_ready", "1 when the replica takes requests.", labels=LABELS)
        busy = GaugeMetricFamily("servestack_replica_in_flight", "Requests at the replica.", labels=LABELS)
        for endpoint in self.table.endpoints():
            values = replica_labels(endpoint)
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

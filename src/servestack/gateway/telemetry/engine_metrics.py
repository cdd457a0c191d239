"""The engines' own metrics, scraped in the background and re-exported under one set of names.

vLLM says `vllm:num_requests_waiting`, SGLang `sglang:num_queue_reqs`, llama.cpp
`llamacpp:requests_deferred`: each engine adapter maps common keys (`waiting`, `running`,
`kv_usage`, ...) to its own names (`Engine.metric_names`), the controller passes them on each
`Endpoint`, the gateway monitor scrapes every ready replica's /metrics (`routing.scrape_interval`),
and this module serves the last scrape as `servestack_engine_*{service, replica, engine, node}` when
/metrics is read. Label sets an engine splits a metric
into (model name, DP rank) are summed per replica. Nothing here runs per request.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from servestack.gateway.fleet.endpoint import Endpoint
from servestack.gateway.fleet.table import EndpointTable

# Common key → (servestack name, type, help). Keys an adapter uses beyond these become gauges.
CANONICAL: dict[str, tuple[str, str, str]] = {
    "running": ("servestack_engine_requests_running", "gauge", "Requests the engine is working on."),
    "waiting": ("servestack_engine_requests_waiting", "gauge", "Requests queued inside the engine."),
    "kv_usage": ("servestack_engine_kv_cache_usage_ratio", "gauge", "Share of the KV cache in use (0..1)."),
    "prompt_tokens": ("servestack_engine_prompt_tokens", "counter", "Prompt tokens the engine processed."),
    "generation_tokens": ("servestack_engine_generation_tokens", "counter", "Tokens the engine generated."),
    "prefix_cache_queries": ("servestack_engine_prefix_cache_queries", "counter", "Prefix-cache lookups (tokens)."),
    "prefix_cache_hits": ("servestack_engine_prefix_cache_hits", "counter", "Prefix-cache hits (tokens)."),
    "cache_hit_rate": ("servestack_engine_prefix_cache_hit_ratio", "gauge", "Prefix-cache hit rate (0..1)."),
    "throughput": ("servestack_engine_generation_tokens_per_second", "gauge", "Generation throughput."),
    "ttft": ("servestack_engine_time_to_first_token_seconds", "histogram", "Engine-side time to first token."),
    "itl": ("servestack_engine_inter_token_latency_seconds", "histogram", "Engine-side gap between tokens."),
    "e2e": ("servestack_engine_request_duration_seconds", "histogram", "Engine-side request latency."),
}
LABELS = ["service", "replica", "engine", "node"]  # every replica's series; node: its cluster node, "" here


@dataclass
class _Histogram:
    buckets: dict[str, float] = field(default_factory=dict)  # le → cumulative count
    sum: float = 0.0


Snapshot = dict[str, float | _Histogram]


def read_exposition(text: str, names: Mapping[str, str]) -> Snapshot:
    """The common keys found in a Prometheus text exposition, label sets summed."""
    by_engine_name = {engine_name: key for key, engine_name in names.items()}
    found: Snapshot = {}
    for family in text_string_to_metric_families(text):
        key = by_engine_name.get(family.name) or by_engine_name.get(family.name + "_total")
        if key is None:
            continue
        if CANONICAL.get(key, ("", "gauge", ""))[1] == "histogram":
            found[key] = _read_histogram(family)
            continue
        values = [s.value for s in family.samples if not s.name.endswith(("_created", "_bucket", "_sum", "_count"))]
        if values:
            found[key] = float(sum(values))
    return found


def _read_histogram(family: Metric) -> _Histogram:
    histogram = _Histogram()
    for sample in family.samples:
        if sample.name.endswith("_bucket"):
            le = sample.labels.get("le", "+Inf")
            histogram.buckets[le] = histogram.buckets.get(le, 0.0) + sample.value
        elif sample.name.endswith("_sum"):
            histogram.sum += sample.value
    return histogram


class EngineMetricsExport(Collector):
    """A Prometheus collector of the engines' metrics, read from the gateway monitor's last scrape of
    each replica (`Vitals.metrics`): the engines are scraped once, for routing and for this."""

    def __init__(self, table: EndpointTable) -> None:
        self.table = table

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("servestack_engine_metrics_up", "1 when the last scrape worked.", labels=LABELS)
        # /metrics renders in a worker thread while the loop replaces scrapes: take each one once.
        scraped = [(e, text) for e in self.table.endpoints() if (text := e.vitals.metrics) is not None]
        snapshots = []
        for endpoint, text in scraped:
            up.add_metric(replica_labels(endpoint), 1.0 if text else 0.0)
            if text:
                snapshots.append((endpoint, read_exposition(text, endpoint.metric_names)))
        yield up
        keys = sorted({key for _, snapshot in snapshots for key in snapshot})
        for key in keys:
            name, kind, doc = CANONICAL.get(key, (f"servestack_engine_{key}", "gauge", f"Engine metric {key!r}."))
            yield _family(name, kind, doc, key, snapshots)


def _family(name: str, kind: str, doc: str, key: str, snapshots: Iterable[tuple[Endpoint, Snapshot]]) -> Metric:
    family: GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily
    if kind == "histogram":
        family = HistogramMetricFamily(name, doc, labels=LABELS)
    elif kind == "counter":
        family = CounterMetricFamily(name, doc, labels=LABELS)
    else:
        family = GaugeMetricFamily(name, doc, labels=LABELS)
    for endpoint, snapshot in snapshots:
        value = snapshot.get(key)
        if value is None:
            continue
        if isinstance(value, _Histogram) and isinstance(family, HistogramMetricFamily):
            buckets = sorted(value.buckets.items(), key=lambda item: float(item[0]))
            family.add_metric(replica_labels(endpoint), buckets=buckets, sum_value=value.sum)
        elif isinstance(value, float) and not isinstance(family, HistogramMetricFamily):
            family.add_metric(replica_labels(endpoint), value)
    return family


def replica_labels(endpoint: Endpoint) -> list[str]:
    """The values of LABELS for `endpoint`."""
    return [endpoint.service, endpoint.id, endpoint.engine, endpoint.node]

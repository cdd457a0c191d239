"""The simulator's Prometheus metrics, under vLLM's names and labels (`model_name`, `engine`).

Gauges (queue, running, KV usage) are read from the scheduler at scrape time; counters and
histograms are updated as requests go. Token counts are tokens of the simulator's tokenizer; times
are simulated seconds, so a run at `time_scale` 0.01 reports what a real engine would.
Each simulator has its own registry: two in one process never share a counter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
LABELS = ("model_name", "engine")
# vLLM's buckets (vllm/v1/metrics/loggers.py), so dashboards built for vLLM read the same.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
               480.0, 960.0, 1920.0, 7680.0)  # fmt: skip


@dataclass(frozen=True)
class Load:
    """The scheduler's state at one moment."""

    waiting: int
    running: int
    kv_usage: float


class _LoadCollector:
    def __init__(self, read: Callable[[], Load], labels: tuple[str, str]) -> None:
        self._read = read
        self._labels = list(labels)

    def collect(self) -> Iterator[Metric]:
        load = self._read()
        for name, doc, value in (
            ("vllm:num_requests_running", "Number of requests in model execution batches.", load.running),
            ("vllm:num_requests_waiting", "Number of requests waiting to be processed.", load.waiting),
            ("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", load.kv_usage),
        ):
            family = GaugeMetricFamily(name, doc, labels=LABELS)
            family.add_metric(self._labels, float(value))
            yield family


class SimMetrics:
    def __init__(self, model_name: str, read_load: Callable[[], Load]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = (model_name, "0")
        self.registry.register(_LoadCollector(read_load, labels))

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, LABELS, registry=self.registry)

        self._prompt_tokens = counter("vllm:prompt_tokens", "Number of prefill tokens processed.").labels(*labels)
        self._generation_tokens = counter("vllm:generation_tokens", "Number of generation tokens processed.").labels(
            *labels
        )
        self._cache_queries = counter("vllm:prefix_cache_queries", "Prefix cache queries, in tokens.").labels(*labels)
        self._cache_hits = counter("vllm:prefix_cache_hits", "Prefix cache hits, in tokens.").labels(*labels)
        self._success = Counter(
            "vllm:request_success", "Count of successfully processed requests.", [*LABELS, "finished_reason"],
            registry=self.registry,
        )  # fmt: skip
        self._success_by_reason = {reason: self._success.labels(*labels, reason) for reason in ("stop", "length")}
        self._ttft = Histogram(
            "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", LABELS,
            buckets=TTFT_BUCKETS, registry=self.registry,
        ).labels(*labels)  # fmt: skip
        self._e2e = Histogram(
            "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", LABELS,
            buckets=E2E_BUCKETS, registry=self.registry,
        ).labels(*labels)  # fmt: skip

    def prompt_seen(self, prompt_tokens: int, cached_tokens: int, *, cache_queried: bool = True) -> None:
        self._prompt_tokens.inc(prompt_tokens)
        if cache_queried:
            self._cache_queries.inc(prompt_tokens)
            self._cache_hits.inc(cached_tokens)

    def first_token(self, seconds: float) -> None:
        self._ttft.observe(seconds)

    def finished(self, generated_tokens: int, seconds: float, reason: str) -> None:
        self._generation_tokens.inc(generated_tokens)
        self._e2e.observe(seconds)
        self._success_by_reason[reason].inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

"""The simulator's Prometheus metrics, under vLLM's names and labels (`model_name`, `engine`).

Gauges (queue, running, KV usage) are read from the scheduler at scrape time. Counters are plain
integers on this object, turned into Prometheus families at scrape time too: the simulator runs on
one event loop, so they need none of prometheus-client's per-increment locking, which would cost a
noticeable share of an instant-mode request. The two histograms use prometheus-client and are only
fed by simulated requests (instant answers have no latency to report). Token counts are tokens of the
simulator's tokenizer; times are simulated seconds, so a run at `time_scale` 0.01 reports what a real
engine would. Each simulator has its own registry: two in one process never share a counter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
LABELS = ("model_name", "engine")
FINISH_REASONS = ("stop", "length")
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


class SimMetrics:
    def __init__(self, model_name: str, read_load: Callable[[], Load]) -> None:
        self._labels = [model_name, "0"]
        self._read_load = read_load
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.cache_queries = 0
        self.cache_hits = 0
        self.successes = dict.fromkeys(FINISH_REASONS, 0)
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(self)
        self._ttft = Histogram(
            "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", LABELS,
            buckets=TTFT_BUCKETS, registry=self.registry,
        ).labels(*self._labels)  # fmt: skip
        self._e2e = Histogram(
            "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", LABELS,
            buckets=E2E_BUCKETS, registry=self.registry,
        ).labels(*self._labels)  # fmt: skip

    def prompt_seen(self, prompt_tokens: int, cached_tokens: int, *, cache_queried: bool = True) -> None:
        self.prompt_tokens += prompt_tokens
        if cache_queried:
            self.cache_queries += prompt_tokens
            self.cache_hits += cached_tokens

    def first_token(self, seconds: float) -> None:
        self._ttft.observe(seconds)

    def finished(self, generated_tokens: int, reason: str, seconds: float | None = None) -> None:
        """Count a finished request; `seconds` (end to end) is None for instant answers."""
        self.generation_tokens += generated_tokens
        self.successes[reason] += 1
        if seconds is not None:
            self._e2e.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        """The gauges and counters, for the registry (prometheus-client's Collector protocol)."""
        load = self._read_load()
        for name, doc, value in (
            ("vllm:num_requests_running", "Number of requests in model execution batches.", load.running),
            ("vllm:num_requests_waiting", "Number of requests waiting to be processed.", load.waiting),
            ("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", load.kv_usage),
        ):
            gauge = GaugeMetricFamily(name, doc, labels=LABELS)
            gauge.add_metric(self._labels, float(value))
            yield gauge
        for name, doc, count in (
            ("vllm:prompt_tokens", "Number of prefill tokens processed.", self.prompt_tokens),
            ("vllm:generation_tokens", "Number of generation tokens processed.", self.generation_tokens),
            ("vllm:prefix_cache_queries", "Prefix cache queries, in tokens.", self.cache_queries),
            ("vllm:prefix_cache_hits", "Prefix cache hits, in tokens.", self.cache_hits),
        ):
            counter = CounterMetricFamily(name, doc, labels=LABELS)
            counter.add_metric(self._labels, count)
            yield counter
        success = CounterMetricFamily(
            "vllm:request_success", "Count of successfully processed requests.", labels=[*LABELS, "finished_reason"]
        )
        for reason, count in self.successes.items():
            success.add_metric([*self._labels, reason], count)
        yield success

"""Prometheus metrics of on-demand loading: what the controller and the load gate report (`LoadStats`),
read at scrape time.

servestack_model_loads_total{service,how}             loads (cold: the engine started; wake: woken from sleep)
servestack_model_unloads_total{service,reason}        unloads (idle, evicted, swapped, asked, failed)
servestack_model_load_duration_seconds{service}       from the decision to load to a ready replica
servestack_model_load_wait_seconds{model}             how long requests waited for their model to load
servestack_model_loaded{service,state}                1 for the state each on-demand service is in
servestack_model_load_waiting{service}                requests waiting for a load now
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from servestack.gateway.relay.loading import LoadGate
from servestack.gateway.telemetry.metrics import Histogram

LOAD_STATES = ("unloaded", "loading", "loaded", "draining")
WAIT_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


@dataclass
class LoadStats:
    """The controller's loads and unloads, and the load gate's waits."""

    loads: dict[tuple[str, str], int] = field(default_factory=dict)  # (service, how: cold | wake | failed) → count
    unloads: dict[tuple[str, str], int] = field(default_factory=dict)  # (service, why: idle | evicted | …) → count
    load_seconds: dict[tuple[str, str], Histogram] = field(default_factory=dict)  # (service, how)
    states: dict[str, str] = field(default_factory=dict)  # service → unloaded | loading | loaded | draining
    waited: dict[str, Histogram] = field(default_factory=dict)  # model → seconds requests waited for its load

    def loaded(self, service: str, how: str, seconds: float) -> None:
        self.loads[(service, how)] = self.loads.get((service, how), 0) + 1
        self.load_seconds.setdefault((service, how), Histogram(WAIT_BUCKETS)).observe(seconds)

    def request_waited(self, model: str, seconds: float) -> None:
        """A request for `model` waited `seconds` for its load (the load gate's `on_wait`)."""
        self.waited.setdefault(model, Histogram(WAIT_BUCKETS)).observe(seconds)

    def unloaded(self, service: str, why: str) -> None:
        self.unloads[(service, why)] = self.unloads.get((service, why), 0) + 1


class LoadingCollector(Collector):
    def __init__(self, gate: LoadGate, stats: LoadStats) -> None:
        self.gate = gate
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
        loads = CounterMetricFamily("servestack_model_loads", "On-demand loads.", labels=["service", "how"])
        for (service, how), count in list(stats.loads.items()):
            loads.add_metric([service, how], count)
        yield loads
        unloads = CounterMetricFamily("servestack_model_unloads", "On-demand unloads.", labels=["service", "reason"])
        for (service, reason), count in list(stats.unloads.items()):
            unloads.add_metric([service, reason], count)
        yield unloads
        durations = HistogramMetricFamily(
            "servestack_model_load_duration_seconds",
            "Seconds from a load's start to a ready replica.",
            labels=["service", "how"],
        )
        for (service, how), histogram in list(stats.load_seconds.items()):
            durations.add_metric([service, how], buckets=histogram.cumulative(), sum_value=histogram.sum)
        yield durations
        waited = HistogramMetricFamily(
            "servestack_model_load_wait_seconds", "Seconds requests waited for their model to load.", labels=["model"]
        )
        for model, histogram in list(stats.waited.items()):
            waited.add_metric([model], buckets=histogram.cumulative(), sum_value=histogram.sum)
        yield waited
        loaded = GaugeMetricFamily(
            "servestack_model_loaded", "1 for the load state each on-demand service is in.", labels=["service", "state"]
        )
        for service, current in list(stats.states.items()):
            for state in LOAD_STATES:
                loaded.add_metric([service, state], 1.0 if state == current else 0.0)
        yield loaded
        waiting = GaugeMetricFamily(
            "servestack_model_load_waiting", "Requests waiting for their model to load.", labels=["service"]
        )
        for service, count in list(self.gate.waiting.items()):
            waiting.add_metric([service], float(count))
        yield waiting

"""Prometheus metrics of on-demand loading, read at scrape time from the load gate and the loader's stats.

servestack_model_loads_total{service,how}             loads (cold: the engine started; wake: woken from sleep)
servestack_model_unloads_total{service,reason}        unloads (idle, evicted, swapped, asked, failed)
servestack_model_load_duration_seconds{service}       from the decision to load to a ready replica
servestack_model_load_wait_seconds{model}             how long requests waited for their model to load
servestack_model_loaded{service,state}                1 for the state each on-demand service is in
servestack_model_load_waiting{service}                requests waiting for a load now
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from servestack.gateway.relay.loading import LoadGate

LOAD_STATES = ("unloaded", "loading", "loaded", "draining")


class LoadingCollector(Collector):
    def __init__(self, gate: LoadGate) -> None:
        self.gate = gate

    def collect(self) -> Iterator[Metric]:
        stats = self.gate.loader.stats
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
        for model, histogram in list(self.gate.waited.items()):
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

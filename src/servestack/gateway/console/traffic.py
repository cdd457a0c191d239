"""The traffic page's numbers: a short in-memory history sampled from the gateway's own metrics.

Once a second (`interval`) the sampler reads the same families `/metrics` serves (requests by model and
status, tokens, requests in flight, the TTFT and inter-token histograms) and keeps one point per model,
plus `*` for all models together: requests/s, errors/s by status and tokens/s over the last `rate_window`
seconds, and TTFT and inter-token percentiles over the last `window` seconds (a histogram's buckets subtracted, then
interpolated within a bucket as Prometheus' `histogram_quantile` does). The last `keep` points are kept;
nothing is read on the request path, and no Prometheus server is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.metrics_core import Metric

ALL = "*"
QUANTILES = (0.5, 0.95, 0.99)
Buckets = list[tuple[float, float]]  # (upper bound, cumulative count); the last bound is +Inf


@dataclass
class _Counts:
    """One model's counters at one moment."""

    statuses: dict[str, float] = field(default_factory=dict)
    prompt: float = 0.0
    completion: float = 0.0
    in_flight: float = 0.0
    ttft: Buckets = field(default_factory=list)
    itl: Buckets = field(default_factory=list)


@dataclass
class _Snapshot:
    time: float
    models: dict[str, _Counts]


class TrafficHistory:
    """Samples `collect()` (the gateway's metrics collector) every `interval` seconds; serves the points."""

    def __init__(
        self,
        collect: Callable[[], Iterable[Metric]],
        *,
        interval: float = 1.0,
        rate_window: float = 5.0,
        window: float = 10.0,
        keep: int = 600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.collect = collect
        self.interval = interval
        self.rate_window = rate_window
        self.window = window
        self.clock = clock
        self.points: deque[dict[str, Any]] = deque(maxlen=keep)
        self.seq = 0
        # The samples before the newest, back to the longer of the two windows.
        self._snapshots: deque[_Snapshot] = deque(maxlen=max(1, round(max(window, rate_window) / interval)))
        self._rate_steps = max(1, round(rate_window / interval))
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="console-traffic")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    def since(self, seq: int) -> dict[str, Any]:
        """The points after `seq` (all kept ones for 0), and the last point's number."""
        first = self.seq - len(self.points) + 1
        points = list(self.points)[max(0, seq + 1 - first) :]
        return {
            "interval": self.interval,
            "rate_window": self.rate_window,
            "window": self.window,
            "seq": self.seq,
            "points": points,
        }

    def sample(self) -> None:
        """Read the metrics now; from the second sample on, add a point."""
        snapshot = _Snapshot(self.clock(), _read(self.collect()))
        history = self._snapshots
        if history:
            before = history[-min(self._rate_steps, len(history))]
            self.seq += 1
            self.points.append({"seq": self.seq, "time": snapshot.time, "models": _point(before, history[0], snapshot)})
        history.append(snapshot)


def _read(families: Iterable[Metric]) -> dict[str, _Counts]:
    models: dict[str, _Counts] = {}
    for family in families:
        for sample in family.samples:
            model = sample.labels.get("model")
            if model is None:
                continue
            counts = models.setdefault(model, _Counts())
            name, value = sample.name, sample.value
            if name == "servestack_requests_total":
                counts.statuses[sample.labels["status"]] = value
            elif name == "servestack_tokens_total":
                setattr(counts, "prompt" if sample.labels["kind"] == "prompt" else "completion", value)
            elif name == "servestack_requests_in_flight":
                counts.in_flight = value
            elif name == "servestack_time_to_first_token_seconds_bucket":
                counts.ttft.append((float(sample.labels["le"]), value))
            elif name == "servestack_inter_token_latency_seconds_bucket":
                counts.itl.append((float(sample.labels["le"]), value))
    if models:
        models[ALL] = _sum(models.values())
    return models


def _sum(all_counts: Iterable[_Counts]) -> _Counts:
    total = _Counts()
    for counts in all_counts:
        for status, value in counts.statuses.items():
            total.statuses[status] = total.statuses.get(status, 0.0) + value
        total.prompt += counts.prompt
        total.completion += counts.completion
        total.in_flight += counts.in_flight
        total.ttft = _add(total.ttft, counts.ttft)
        total.itl = _add(total.itl, counts.itl)
    return total


def _add(a: Buckets, b: Buckets) -> Buckets:
    if not a:
        return list(b)
    return [(bound, x + y) for (bound, x), (_, y) in zip(a, b, strict=True)]


def _point(before: _Snapshot, oldest: _Snapshot, now: _Snapshot) -> dict[str, dict[str, Any]]:
    """Rates since `before`, percentiles of what was observed since `oldest`."""
    seconds = max(now.time - before.time, 1e-9)
    point = {}
    for model, counts in now.models.items():
        earlier = before.models.get(model, _Counts())
        earliest = oldest.models.get(model, _Counts())
        requests = {s: v - earlier.statuses.get(s, 0.0) for s, v in counts.statuses.items()}
        point[model] = {
            "requests_per_s": sum(requests.values()) / seconds,
            "errors_per_s": {s: n / seconds for s, n in sorted(requests.items()) if n and _is_error(s)},
            "completion_tokens_per_s": (counts.completion - earlier.completion) / seconds,
            "prompt_tokens_per_s": (counts.prompt - earlier.prompt) / seconds,
            "in_flight": counts.in_flight,
            "ttft": _percentiles(_subtract(counts.ttft, earliest.ttft)),
            "itl": _percentiles(_subtract(counts.itl, earliest.itl)),
        }
    return point


def _is_error(status: str) -> bool:
    return not status.isdigit() or int(status) >= 400 or int(status) == 0


def _subtract(now: Buckets, before: Buckets) -> Buckets:
    if not before:
        return now
    return [(bound, x - y) for (bound, x), (_, y) in zip(now, before, strict=True)]


def _percentiles(buckets: Buckets) -> dict[str, float] | None:
    """p50, p95, p99 in seconds of the observations in `buckets`; None without any."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    return {f"p{round(q * 100)}": quantile(q, buckets) for q in QUANTILES}


def quantile(q: float, buckets: Buckets) -> float:
    """The q-quantile of cumulative `buckets`, interpolated linearly within its bucket (the first bucket
    starts at 0; a quantile in the +Inf bucket is the largest finite bound, as Prometheus answers)."""
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank and count > below:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower

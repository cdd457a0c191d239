"""Statistics of a run: percentiles, latency distributions, throughput and goodput.

Percentiles interpolate linearly between the closest ranks (numpy's default), so they agree with
what most people compute by hand or in a notebook. All times are seconds.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from servestack.bench.client import Sample
from servestack.bench.loadgen import Concurrency, Rate, RunResult


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0 ≤ q ≤ 100) of `values`, interpolated linearly; values need not be sorted."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError("q must be within 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Distribution:
    count: int
    mean: float
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Distribution | None:
        ordered = sorted(values)
        if not ordered:
            return None
        return cls(
            count=len(ordered),
            mean=math.fsum(ordered) / len(ordered),
            p50=percentile(ordered, 50),
            p90=percentile(ordered, 90),
            p99=percentile(ordered, 99),
            max=ordered[-1],
        )


@dataclass(frozen=True)
class Slo:
    """Service-level objectives a request must meet to count towards goodput (None: not checked)."""

    ttft: float | None = None
    tpot: float | None = None

    @property
    def active(self) -> bool:
        return self.ttft is not None or self.tpot is not None

    def met_by(self, sample: Sample) -> bool:
        if sample.error is not None:
            return False
        if self.ttft is not None and (sample.ttft is None or sample.ttft > self.ttft):
            return False
        tpot = sample.tpot
        return self.tpot is None or tpot is None or tpot <= self.tpot


@dataclass(frozen=True)
class Summary:
    """One load level, summarised."""

    label: str
    concurrency: int | None
    rate: float | None
    requests: int
    completed: int
    errors: dict[str, int]
    duration: float  # from the first request sent to the last answer
    request_rate: float  # completed requests per second
    output_token_rate: float
    prompt_tokens: int
    output_tokens: int
    without_usage: int  # completed requests whose token counts were estimated (no usage sent)
    goodput: float | None  # requests per second meeting the SLO
    goodput_fraction: float | None
    ttft: Distribution | None
    itl: Distribution | None
    tpot: Distribution | None
    e2e: Distribution | None
    error_examples: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(result: RunResult, slo: Slo) -> Summary:
    samples = result.samples
    done = [s for s in samples if s.error is None]
    errors = Counter(s.error for s in samples if s.error is not None)
    examples: dict[str, str] = {}
    for s in samples:
        if s.error is not None and s.error not in examples:
            examples[s.error] = s.detail
    duration = (max(s.end for s in samples) - min(s.start for s in samples)) if samples else result.wall_time
    duration = max(duration, 1e-9)
    output_tokens = sum(s.output_tokens for s in done)
    good = sum(1 for s in done if slo.met_by(s)) if slo.active else None
    level = result.level
    return Summary(
        label=level.label,
        concurrency=level.clients if isinstance(level, Concurrency) else None,
        rate=level.per_second if isinstance(level, Rate) else None,
        requests=len(samples),
        completed=len(done),
        errors=dict(errors),
        duration=duration,
        request_rate=len(done) / duration,
        output_token_rate=output_tokens / duration,
        prompt_tokens=sum(s.prompt_tokens for s in done),
        output_tokens=output_tokens,
        without_usage=sum(1 for s in done if not s.usage),
        goodput=None if good is None else good / duration,
        goodput_fraction=None if good is None or not samples else good / len(samples),
        ttft=Distribution.of(s.ttft for s in done if s.ttft is not None),
        itl=Distribution.of(gap for s in done for gap in s.itl),
        tpot=Distribution.of(t for s in done if (t := s.tpot) is not None),
        e2e=Distribution.of(s.latency for s in done),
        error_examples=examples,
    )

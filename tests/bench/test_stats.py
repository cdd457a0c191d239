"""Percentiles, distributions, goodput and summaries on inputs whose answers are known by hand."""

from __future__ import annotations

import pytest

from servestack.bench import Concurrency, Distribution, Rate, Sample, Slo, percentile, summarize
from servestack.bench.loadgen import RunResult


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 50, 5.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        ([4.0, 1.0, 3.0, 2.0], 90, 3.7),  # unsorted input; numpy.percentile gives 3.7
        ([float(i) for i in range(1, 101)], 99, 99.01),
        ([float(i) for i in range(1, 101)], 50, 50.5),
    ],
)
def test_percentile_interpolates_like_numpy(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_refuses_no_values_and_bad_q() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_distribution_of_values() -> None:
    dist = Distribution.of([0.3, 0.1, 0.2])
    assert dist is not None
    assert (dist.count, dist.p50, dist.max) == (3, 0.2, 0.3)
    assert dist.mean == pytest.approx(0.2)
    assert Distribution.of([]) is None


def sample(start: float, ttft: float, end: float, tokens: int, error: str | None = None) -> Sample:
    return Sample(start=start, ttft=ttft, end=end, output_tokens=tokens, prompt_tokens=10, usage=True, error=error)


def test_slo_checks_ttft_and_tpot() -> None:
    fast = sample(0.0, 0.1, 1.1, 11)  # tpot = 1.0 / 10 = 0.1
    slow_start = sample(0.0, 0.6, 1.1, 11)
    assert Slo(ttft=0.5).met_by(fast)
    assert not Slo(ttft=0.5).met_by(slow_start)
    assert Slo(tpot=0.1).met_by(fast)
    assert not Slo(tpot=0.05).met_by(fast)
    assert not Slo(ttft=10).met_by(sample(0.0, 0.1, 1.1, 11, error="HTTP 500"))
    assert not Slo().active


def test_summary_counts_goodput_throughput_and_errors() -> None:
    samples = [
        sample(0.0, 0.1, 1.0, 10),
        sample(0.0, 0.2, 2.0, 20),
        sample(1.0, 0.9, 3.0, 30),  # misses the TTFT SLO
        sample(2.0, 0.1, 4.0, 0, error="HTTP 503"),
    ]
    samples[-1].detail = "engine loading"
    summary = summarize(RunResult(Concurrency(2), samples, 0.0, 4.0), Slo(ttft=0.5))
    assert (summary.requests, summary.completed, summary.errors) == (4, 3, {"HTTP 503": 1})
    assert summary.error_examples == {"HTTP 503": "engine loading"}
    assert summary.duration == pytest.approx(4.0)
    assert summary.request_rate == pytest.approx(3 / 4)
    assert summary.output_tokens == 60
    assert summary.output_token_rate == pytest.approx(15.0)
    assert summary.goodput == pytest.approx(2 / 4)
    assert summary.goodput_fraction == pytest.approx(2 / 4)
    assert summary.e2e is not None and summary.e2e.p50 == pytest.approx(2.0)
    assert summary.ttft is not None and summary.ttft.max == pytest.approx(0.9)
    assert summary.concurrency == 2 and summary.rate is None


def test_summary_without_slo_has_no_goodput_and_keeps_the_rate() -> None:
    summary = summarize(RunResult(Rate(5.0), [sample(0.0, 0.1, 1.0, 3)], 0.0, 1.0), Slo())
    assert summary.goodput is None
    assert summary.rate == 5.0 and summary.label == "rate 5/s"
    assert summary.tpot is not None and summary.tpot.p50 == pytest.approx(0.45)

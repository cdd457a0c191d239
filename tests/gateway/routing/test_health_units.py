"""The circuit breaker, the retry budget and the metrics reader, on a fake clock and canned text."""

from __future__ import annotations

from servestack.engines.sim import METRIC_NAMES
from servestack.gateway.fleet.breaker import BreakerState, CircuitBreaker
from servestack.gateway.fleet.gauges import read_gauges
from servestack.gateway.relay.retry import RetryBudget
from tests.gateway.routing.policy_helpers import FakeClock


def test_breaker_opens_after_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(failure_threshold=3, open_seconds=5, clock=FakeClock())
    breaker.failed()
    breaker.failed()
    breaker.succeeded()  # not consecutive any more
    breaker.failed()
    breaker.failed()
    assert breaker.state is BreakerState.CLOSED and breaker.permits()
    breaker.failed()
    assert breaker.state is BreakerState.OPEN and not breaker.permits()


def test_open_breaker_lets_one_trial_through_after_the_pause() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, open_seconds=5, clock=clock)
    breaker.failed()
    clock.advance(4.9)
    assert not breaker.permits()
    clock.advance(0.2)
    assert breaker.permits() and breaker.state is BreakerState.HALF_OPEN
    breaker.dispatched()
    assert not breaker.permits()  # one trial at a time
    breaker.failed()
    assert breaker.state is BreakerState.OPEN and not breaker.permits()
    clock.advance(5)
    assert breaker.permits()
    breaker.dispatched()
    breaker.succeeded()
    assert breaker.state is BreakerState.CLOSED and breaker.permits()


def test_a_health_probe_closes_a_half_open_breaker_but_not_an_open_one() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, open_seconds=5, clock=clock)
    breaker.failed()
    breaker.probe_succeeded()
    assert breaker.state is BreakerState.OPEN
    clock.advance(5)
    assert breaker.permits()
    breaker.probe_succeeded()
    assert breaker.state is BreakerState.CLOSED


def test_retry_budget_allows_a_burst_then_a_fraction_of_the_traffic() -> None:
    clock = FakeClock()
    budget = RetryBudget(0.2, burst=3, min_per_second=0.0, clock=clock)
    assert [budget.withdraw() for _ in range(4)] == [True, True, True, False]
    for _ in range(10):
        budget.deposit()
    assert [budget.withdraw() for _ in range(3)] == [True, True, False]  # 10 requests earn 2 retries


def test_retry_budget_trickles_back_with_time_up_to_the_burst() -> None:
    clock = FakeClock()
    budget = RetryBudget(0.2, burst=2, min_per_second=1.0, clock=clock)
    assert budget.withdraw() and budget.withdraw() and not budget.withdraw()
    clock.advance(1.0)
    assert budget.withdraw() and not budget.withdraw()
    clock.advance(60)
    assert budget.balance == 2


def test_zero_ratio_means_no_retries() -> None:
    assert not RetryBudget(0.0).withdraw()


SIM_METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="sim"} 3.0
vllm:num_requests_waiting{engine="0",model_name="sim"} 7.0
vllm:num_requests_waiting{engine="1",model_name="sim"} 1.0
vllm:kv_cache_usage_perc{engine="0",model_name="sim"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="sim"} 0.5 1712345678000
vllm:num_requests_waiting_total 99
"""


def test_gauges_are_read_under_the_engines_names() -> None:
    gauges = read_gauges(SIM_METRICS, METRIC_NAMES, ("waiting", "running", "kv_usage"))
    assert gauges == {"running": 3.0, "waiting": 8.0, "kv_usage": 0.5}


def test_unmapped_or_missing_gauges_are_left_out() -> None:
    assert read_gauges(SIM_METRICS, {}, ("waiting",)) == {}
    assert read_gauges("sglang:num_queue_reqs 4\n", {"waiting": "sglang:num_queue_reqs"}, ("waiting", "running")) == {
        "waiting": 4.0
    }


def test_an_abandoned_trial_lets_the_next_request_try() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, open_seconds=1, clock=clock)
    breaker.failed()
    clock.advance(2)
    assert breaker.permits()
    breaker.dispatched()
    assert not breaker.permits()
    breaker.abandoned()
    assert breaker.permits() and breaker.state is BreakerState.HALF_OPEN

"""The latency model on a fake clock: exact timelines, queueing and KV admission."""

from __future__ import annotations

import asyncio

import pytest

from servestack.sim.radix import RadixCache
from servestack.sim.scheduler import LatencyModel, Scheduler, Sequence, SequenceState


class FakeClock:
    """Simulated time that only moves when a test moves it (or when someone sleeps until later)."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    async def sleep_until(self, moment: float) -> None:
        self.t = max(self.t, moment)
        await asyncio.sleep(0)


def make(max_running: int = 4, kv_capacity: int = 100_000, cache: int = 100_000) -> tuple[Scheduler, FakeClock]:
    clock = FakeClock()
    model = LatencyModel(prefill_rate=1000.0, decode_rate=10.0, max_running=max_running, kv_capacity=kv_capacity)
    return Scheduler(model, RadixCache(cache), clock), clock


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_timeline_is_prefill_then_one_token_per_decode_interval() -> None:
    async def main() -> None:
        scheduler, _ = make()
        seq = Sequence(list(range(500)), max_tokens=5)
        await scheduler.admit(seq)
        assert seq.first_token_at == pytest.approx(0.5)  # 500 tokens at 1000/s
        assert [seq.token_time(i) for i in range(5)] == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9])
        assert seq.finish_at == pytest.approx(0.9)
        assert [seq.tokens_due(t) for t in (0.0, 0.5, 0.65, 0.9, 5.0)] == [0, 1, 2, 5, 5]

    run(main())


def test_a_cached_prefix_skips_its_prefill() -> None:
    async def main() -> None:
        scheduler, clock = make()
        prompt = list(range(1000))
        first = Sequence(prompt, max_tokens=1)
        await scheduler.admit(first)
        await scheduler.prefill(first)  # the prompt is cached once its prefill is done
        scheduler.finish(first)
        clock.t = 10.0
        again = Sequence([*prompt[:900], 7, 8], max_tokens=1)
        await scheduler.admit(again)
        assert again.cached_tokens == 900
        assert again.first_token_at - again.arrived_at == pytest.approx(2 / 1000)
        assert first.first_token_at - first.arrived_at == pytest.approx(1.0)

    run(main())


def test_an_identical_prompt_still_recomputes_its_last_token() -> None:
    async def main() -> None:
        scheduler, _ = make()
        for _ in range(2):
            seq = Sequence([1, 2, 3, 4], max_tokens=1)
            await scheduler.admit(seq)
            await scheduler.prefill(seq)
            scheduler.finish(seq)
        assert seq.cached_tokens == 3

    run(main())


def test_prefills_are_served_one_after_another() -> None:
    async def main() -> None:
        scheduler, _ = make()
        a, b = Sequence(list(range(1000)), 1), Sequence(list(range(5000, 5500)), 1)
        await scheduler.admit(a)
        await scheduler.admit(b)
        assert a.first_token_at == pytest.approx(1.0)
        assert b.first_token_at == pytest.approx(1.5)  # waits for a's prefill: the backlog counts

    run(main())


def test_a_full_batch_queues_fifo_until_a_sequence_finishes() -> None:
    async def main() -> None:
        scheduler, clock = make(max_running=2)
        seqs = [Sequence([i, i + 1], max_tokens=3) for i in range(0, 8, 2)]
        tasks = [asyncio.create_task(scheduler.admit(s)) for s in seqs]
        await asyncio.sleep(0)
        assert [s.state for s in seqs] == [SequenceState.RUNNING] * 2 + [SequenceState.WAITING] * 2
        assert (len(scheduler.running), len(scheduler.waiting)) == (2, 2)
        clock.t = 4.0
        scheduler.finish(seqs[1])
        await asyncio.sleep(0)
        assert seqs[2].state is SequenceState.RUNNING and seqs[3].state is SequenceState.WAITING
        assert seqs[2].started_at == 4.0 and seqs[2].first_token_at >= 4.0
        scheduler.finish(seqs[0])
        await asyncio.gather(*tasks)
        assert len(scheduler.waiting) == 0

    run(main())


def test_admission_waits_for_kv_room_and_the_head_blocks_the_queue() -> None:
    async def main() -> None:
        scheduler, _ = make(kv_capacity=100)
        big = Sequence(list(range(60)), max_tokens=20)  # reserves 80
        await scheduler.admit(big)
        assert scheduler.kv_usage == pytest.approx(0.8)
        blocked = Sequence(list(range(30)), max_tokens=10)  # 40 more would be 120
        small = Sequence([1], max_tokens=1)  # would fit, but FIFO: it waits behind `blocked`
        waits = [asyncio.create_task(scheduler.admit(s)) for s in (blocked, small)]
        await asyncio.sleep(0)
        assert blocked.state is SequenceState.WAITING and small.state is SequenceState.WAITING
        scheduler.finish(big)
        await asyncio.gather(*waits)
        assert scheduler.kv_used == 40 + 2

    run(main())


def test_a_request_larger_than_the_kv_cache_never_fits() -> None:
    scheduler, _ = make(kv_capacity=100)
    assert not scheduler.fits(Sequence(list(range(95)), max_tokens=10))
    assert scheduler.fits(Sequence(list(range(90)), max_tokens=10))


def test_cancelling_a_waiting_request_takes_it_out_of_the_queue() -> None:
    async def main() -> None:
        scheduler, _ = make(max_running=1)
        running = Sequence([1, 2], 1)
        await scheduler.admit(running)
        waiting = Sequence([3, 4], 1)
        task = asyncio.create_task(scheduler.admit(waiting))
        await asyncio.sleep(0)
        assert len(scheduler.waiting) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(scheduler.waiting) == 0 and waiting.state is SequenceState.FINISHED
        scheduler.finish(running)
        assert scheduler.kv_used == 0 and not scheduler.running

    run(main())


def test_finishing_caches_the_whole_conversation() -> None:
    async def main() -> None:
        scheduler, _ = make()
        seq = Sequence([1, 2, 3], 2)
        await scheduler.admit(seq)
        scheduler.finish(seq, conversation=[1, 2, 3, 40, 41])
        assert scheduler.cache.match([1, 2, 3, 40, 41, 99]) == 5

    run(main())

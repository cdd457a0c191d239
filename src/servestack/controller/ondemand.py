"""Loading and unloading on-demand services by the plan's co-residency: the gateway's `Loader`.

One `Slot` per on-demand service holds its load state and what the gateway told of its use:

    unloaded ──a request waits──▶ loading ──ready──▶ loaded ──idle for keep_alive, evicted, asked──▶ draining
       ▲  ▲                          │ failed: every waiter gets a 503 naming it                        │
       │  └──────────────────────────┘                                                                  │
       └──────────────── engine stopped (unload: stop) or asleep (unload: sleep) ◀─────────────────────┘

Every decision is made in `_step`, run by one task whenever something changes (a request waits or
ends, a load or unload finishes, a timer is due), so no two decisions race:

1. Services with waiting requests, oldest waiter first. Loaded → the waiters go on. It fits beside
   what is loaded, loading or still draining (plan/residency.py) → load it. Otherwise evict, by the
   rule of `eviction.py` (fewest, lowest priority, longest idle), among loaded services no request
   claims. A service with requests in flight or waiting (or whose last request ended less than
   RECENT_USE ago: the next is usually on its way) is not evicted — except by the fairness
   hold: once the oldest waiter has waited `gateway.swap_hold` seconds, a busy service loaded at
   least that long may be chosen too; it drains (its requests in flight finish, its new ones wait
   their turn) and the two swap. While an earlier service is blocked, a later one may load only if
   it fits without evicting anything.
2. Idle unloads: a loaded service no request claims, idle for its keep_alive (the last request's
   Ollama `keep_alive`, else its own), is unloaded.

Unloading drains first and never cuts a request: the drain waits for every request in flight (the
gateway's own deadlines bound each one). Then the engine is stopped, or put to sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from servestack.controller.eviction import Candidate, choose_victims
from servestack.controller.slots import Engines, LoadState, Slot, load_failed
from servestack.errors import ServestackError, StateError, UpstreamUnavailable
from servestack.gateway.relay.loading import Residence
from servestack.gateway.telemetry.loading_metrics import LoadStats
from servestack.plan import Plan
from servestack.plan.residency import Residency
from servestack.stack import FOREVER

log = logging.getLogger("servestack.controller")

MAX_NAP = 5.0  # the decision loop looks again at least this often
# A service whose last request ended this recently still counts as busy: a client's next request is
# usually on its way, and evicting in that gap would swap on every request.
RECENT_USE = 1.0


class OnDemand:
    """Decides what is loaded; the gateway calls it through the `Loader` protocol (gateway/relay/loading.py)."""

    def __init__(
        self,
        engines: Engines,
        plan: Plan,
        *,
        swap_hold: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.engines = engines
        self.residency = plan.residency or Residency()
        self.swap_hold = swap_hold
        self.clock = clock
        self.wall_clock = wall_clock
        self.slots = {
            name: Slot(sp, keep_alive=sp.service.keep_alive)
            for name, sp in plan.services.items()
            if sp.service.on_demand
        }
        self.stats = LoadStats(states={name: LoadState.UNLOADED.value for name in self.slots})
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- the Loader protocol (gateway/relay/loading.py)

    def claim(self, service: str) -> None:
        self.slots[service].claims += 1

    def release(self, service: str, keep_alive: float | None = None) -> None:
        slot = self.slots[service]
        slot.claims -= 1
        slot.keep_alive = slot.plan.service.keep_alive if keep_alive is None else keep_alive
        if slot.claims == 0:
            slot.idle_since = self.clock()
            self._wake()

    async def ensure_loaded(self, service: str) -> None:
        slot = self.slots[service]
        if slot.state is LoadState.LOADED and self.engines.service_ready(service):
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        slot.waiters.append(waiter)
        if slot.waiting_since is None:
            slot.waiting_since = self.clock()
        self._wake()
        try:
            await waiter
        finally:
            with contextlib.suppress(ValueError):
                slot.waiters.remove(waiter)
            if not slot.waiters:
                slot.waiting_since = None

    async def unload(self, service: str) -> None:
        self.slots[service].unload_asked = "asked (keep_alive 0)"
        self._wake()

    def residence(self, service: str) -> Residence | None:
        slot = self.slots.get(service)
        if slot is None:
            return None  # an always service: loaded for good
        vram = sum(
            int(share * self.residency.floors[gpu].total_bytes)
            for gpu, share in self.residency.shares.get(service, {}).items()
        )
        size = max(slot.plan.weights_bytes or 0, vram)
        if slot.keep_alive == FOREVER:
            return Residence(size, vram, None)
        idle_from = self.wall_clock() if slot.busy else self.wall_clock() - (self.clock() - slot.idle_since)
        return Residence(size, vram, idle_from + slot.keep_alive)

    # --- commands (control socket)

    async def load_service(self, name: str) -> None:
        """`servestack load`: load it now (evicting by the rule if needed); its keep_alive counts from now."""
        slot = self._slot(name)
        self.claim(name)
        try:
            await self.ensure_loaded(name)
        finally:
            self.release(name)
        slot.idle_since = self.clock()

    async def unload_service(self, name: str) -> None:
        """`servestack unload`: unload it once its requests in flight are done; return when it is unloaded."""
        slot = self._slot(name)
        if slot.state is LoadState.UNLOADED and slot.task is None:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        slot.unloaded.append(done)
        slot.unload_asked = "asked"
        self._wake()
        await done

    def snapshot(self) -> list[dict[str, object]]:
        """Each on-demand service's load state and use, for `servestack ps`."""
        now = self.clock()
        rows: list[dict[str, object]] = []
        for slot in self.slots.values():
            idle = None if slot.busy or slot.state is not LoadState.LOADED else now - slot.idle_since
            unloads_in = None
            if idle is not None and slot.keep_alive != FOREVER:
                unloads_in = max(0.0, slot.keep_alive - idle)
            rows.append(
                {
                    "service": slot.name,
                    "state": slot.state.value,
                    "asleep": slot.asleep,
                    "gpus": {str(g): s for g, s in self.residency.shares.get(slot.name, {}).items()},
                    "claimed_bytes": (r.vram_bytes if (r := self.residence(slot.name)) else 0),
                    "idle_seconds": idle,
                    "unloads_in_seconds": unloads_in,
                    "keep_alive_seconds": None if slot.keep_alive == FOREVER else slot.keep_alive,
                    "priority": slot.plan.service.priority,
                    "in_flight": slot.claims - len(slot.waiters),
                    "waiting": len(slot.waiters),
                }
            )
        return rows

    # --- what the controller tells it

    def replica_changed(self, name: str, running: bool, why: str) -> None:
        """A replica of `name` changed; `running`: some replica of it still runs. A loaded service whose engine
        died (it is not restarted, being on demand) or was stopped reads as unloaded (`why`: exited, stopped)."""
        slot = self.slots.get(name)
        if slot is None or slot.task is not None or slot.state is not LoadState.LOADED or running:
            return
        self._set_state(slot, LoadState.UNLOADED)
        slot.asleep = False
        self.stats.unloaded(name, why)
        self._wake()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="on-demand")

    async def stop(self) -> None:
        """Stop deciding; loads and unloads in progress are cancelled (the supervisor stops their engines)."""
        tasks = [t for t in [self._task, *(s.task for s in self.slots.values())] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        stopping = UpstreamUnavailable("servestack is stopping", retry_after=5)
        for slot in self.slots.values():
            self._fail_waiters(slot, stopping)

    # --- decisions

    def _wake(self) -> None:
        self._changed.set()

    async def _run(self) -> None:
        while True:
            self._changed.clear()
            nap = self._step(self.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), nap)

    def _step(self, now: float) -> float:
        """Make every decision due now; the seconds until the next one may be due."""
        naps = [MAX_NAP]
        blocked = False
        for slot in sorted((s for s in self.slots.values() if s.waiters), key=lambda s: s.waiting_since or now):
            if slot.state is LoadState.LOADED and self.engines.service_ready(slot.name):
                self._resolve(slot)
            elif slot.state is LoadState.UNLOADED and slot.task is None:
                blocked = self._admit(slot, now, naps, overtaking=blocked) or blocked
        for slot in self.slots.values():
            if slot.state is LoadState.LOADED and slot.task is None and not slot.busy:
                naps.append(self._maybe_idle_unload(slot, now))
            elif slot.unload_asked and slot.state is LoadState.UNLOADED and slot.task is None:
                slot.unload_asked = None
                self._tell_unloaded(slot)
        return max(0.01, min(naps))

    def _admit(self, slot: Slot, now: float, naps: list[float], *, overtaking: bool) -> bool:
        """Load `slot` if it fits, else make room; True when it stays blocked."""
        going = {s.name for s in self.slots.values() if s.state is LoadState.DRAINING or (s.asleep and s.task)}
        holding = {s.name for s in self.slots.values() if s.holds_gpus} - going
        asleep = {s.name for s in self.slots.values() if s.asleep} - {slot.name}

        def fits(leaving: frozenset[str]) -> bool:
            loaded = (holding | going | {slot.name}) - leaving
            return self.residency.fits(loaded, asleep - leaving)

        if fits(frozenset()):
            self._set_state(slot, LoadState.LOADING)  # now, not when the task first runs: the next decision sees it
            self._begin(slot, self._load(slot))
            return False
        if overtaking or going:  # an earlier service is blocked, or room is being made already
            return True
        waited = now - (slot.waiting_since or now)
        fair = waited >= self.swap_hold
        candidates = [c for s in self.slots.values() if s is not slot and (c := self._candidate(s, now, fair))]
        victims = choose_victims(candidates, fits)
        if not victims:
            naps += [self._next_pause(now), self.swap_hold - waited if not fair else self._next_hold_end(now)]
            return True
        for victim in victims:
            why = f"swapped out for {slot.name} after {waited:.0f}s" if victim.busy else f"evicted for {slot.name}"
            reason = "swapped" if victim.busy else "evicted"
            self._start_unload(self.slots[victim.name], why, reason)
        return True

    def _next_pause(self, now: float) -> float:
        """Seconds until a loaded service's last request is RECENT_USE old (it may then be evicted)."""
        ends = [
            s.idle_since + RECENT_USE - now
            for s in self.slots.values()
            if s.state is LoadState.LOADED and not s.busy and now - s.idle_since < RECENT_USE
        ]
        return min(ends) + 0.001 if ends else MAX_NAP

    def _next_hold_end(self, now: float) -> float:
        """Seconds until the next loaded service has held its GPUs for `swap_hold` (and may be swapped out)."""
        ends = [s.loaded_at + self.swap_hold - now for s in self.slots.values() if s.state is LoadState.LOADED]
        return min([end for end in ends if end > 0] or [MAX_NAP])

    def _candidate(self, slot: Slot, now: float, fair: bool) -> Candidate | None:
        """`slot` as a service that could make room, or None when it may not go now."""
        if slot.task is not None:
            return None
        if slot.state is LoadState.UNLOADED:
            if not slot.asleep:
                return None
            return Candidate(slot.name, slot.plan.service.priority, now - slot.idle_since, asleep=True)
        if slot.state is not LoadState.LOADED:
            return None
        busy = slot.busy or now - slot.idle_since < RECENT_USE
        if busy and not (fair and now - slot.loaded_at >= self.swap_hold):
            return None
        idle = 0.0 if slot.busy else now - slot.idle_since
        return Candidate(slot.name, slot.plan.service.priority, idle, busy=busy)

    def _maybe_idle_unload(self, slot: Slot, now: float) -> float:
        """Unload `slot` when its keep_alive ran out (or an unload was asked); seconds until it may be due."""
        if slot.unload_asked:
            self._start_unload(slot, slot.unload_asked, "asked")
            return MAX_NAP
        left = slot.keep_alive - (now - slot.idle_since)
        if left > 0:
            return left
        idle = "at once" if slot.keep_alive == 0 else f"idle for {_seconds(slot.keep_alive)}"
        self._start_unload(slot, idle, "idle")
        return MAX_NAP

    def _start_unload(self, slot: Slot, why: str, reason: str) -> None:
        if not slot.asleep:  # a sleeper that must go is stopped: it holds no share meanwhile
            self._set_state(slot, LoadState.DRAINING)
        self._begin(slot, self._unload(slot, why, reason))

    def _begin(self, slot: Slot, work: Coroutine[Any, Any, None]) -> None:
        slot.task = asyncio.create_task(work, name=f"on-demand {slot.name}")

    # --- work

    async def _load(self, slot: Slot) -> None:
        started = self.clock()
        try:
            how = await self.engines.load_replicas(slot.name)
        except ServestackError as error:
            self._set_state(slot, LoadState.UNLOADED)
            slot.asleep = False
            self.stats.loaded(slot.name, "failed", self.clock() - started)
            self._fail_waiters(slot, load_failed(slot, error))
        else:
            now = self.clock()
            self._set_state(slot, LoadState.LOADED)
            slot.asleep = False
            slot.loaded_at = slot.idle_since = now
            self.stats.loaded(slot.name, how, now - started)
            self._resolve(slot)
        finally:
            slot.task = None
            self._wake()

    async def _unload(self, slot: Slot, why: str, reason: str) -> None:
        try:
            sleep = slot.plan.service.unload == "sleep" and not slot.asleep
            slot.asleep = await self.engines.unload_replicas(slot.name, why, sleep=sleep)
        except ServestackError as error:
            log.warning("unloading %s: %s", slot.name, error.message)
            slot.asleep = False
        finally:
            self._set_state(slot, LoadState.UNLOADED)
            self.stats.unloaded(slot.name, reason)
            slot.unload_asked = None
            self._tell_unloaded(slot)
            slot.task = None
            self._wake()

    # --- bookkeeping

    def _set_state(self, slot: Slot, state: LoadState) -> None:
        slot.state = state
        self.stats.states[slot.name] = state.value

    def _resolve(self, slot: Slot) -> None:
        for waiter in slot.waiters:  # in arrival order: each resumes in turn
            if not waiter.done():
                waiter.set_result(None)

    def _fail_waiters(self, slot: Slot, error: ServestackError) -> None:
        for waiter in slot.waiters:
            if not waiter.done():
                waiter.set_exception(error)

    def _tell_unloaded(self, slot: Slot) -> None:
        for done in slot.unloaded:
            if not done.done():
                done.set_result(None)
        slot.unloaded.clear()

    def _slot(self, name: str) -> Slot:
        slot = self.slots.get(name)
        if slot is None:
            raise StateError(f"{name!r} is not an on-demand service", fix="only services with `load: on-demand` load")
        return slot


def _seconds(seconds: float) -> str:
    return f"{seconds / 60:g}m" if seconds >= 60 and seconds % 60 == 0 else f"{seconds:g}s"

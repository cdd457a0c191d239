"""Co-residency of on-demand services: which of them can be loaded together, derived from the plan.

Every service claims a share of each GPU it runs on (`sharing.gpu_share`: vLLM, SGLang and mistral.rs
their memory fraction, llama.cpp its weights, KV and buffers over the GPU's memory), and every engine
process also holds a CUDA context outside that share. `always` services are loaded all the time, so
their claims are the floor of every GPU. A set of on-demand services can be loaded together when, on
every GPU, the floor plus their shares plus one CUDA context per process stays within the GPU:

    fits(S)  ⇔  for every GPU g:  Σ share(always on g) + Σ share(S on g) + processes(g) × context / total(g) ≤ 1

A sleeping engine (`unload: sleep`) keeps its process, so it keeps a CUDA context on each of its GPUs
but no share; its weights wait in host memory. Nothing here is pairwise by construction: three services
that fit two by two may not fit all three, so the controller asks `conflicts` of the whole set it
would have loaded, and `plan` lists both the pairs that exclude each other and the largest groups that
fit together. Pure: built from the service plans, no I/O.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from servestack.engines import get_engine
from servestack.engines.memory import CUDA_CONTEXT
from servestack.gpus import GIB, Inventory
from servestack.plan.model import Finding, ServicePlan, Severity, setting_key
from servestack.plan.sharing import gpu_share

EXACT_GROUPS = 12  # up to this many on-demand services every subset is tried; past it only pairs are listed


@dataclass(frozen=True)
class GpuFloor:
    """One GPU: its size, and what the always-loaded services take of it (shares, processes)."""

    index: int
    total_bytes: int
    always: Mapping[str, float]

    @property
    def context(self) -> float:
        """One CUDA context as a share of this GPU."""
        return CUDA_CONTEXT / self.total_bytes


@dataclass(frozen=True)
class Conflict:
    """Services that cannot be loaded together, because of one GPU: the figures that decide it."""

    gpu: int
    loaded: Mapping[str, float]  # on-demand service → its share of the GPU
    always: Mapping[str, float]
    asleep: tuple[str, ...]  # sleeping engines on the GPU: a CUDA context each
    context: float  # one CUDA context, as a share of the GPU

    @property
    def total(self) -> float:
        processes = len(self.loaded) + len(self.always) + len(self.asleep)
        return sum(self.loaded.values()) + sum(self.always.values()) + processes * self.context

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(self.loaded)

    def describe(self) -> str:
        """`GPU 1: codestral 0.60 + codellama 0.45 + 2 CUDA contexts 0.02 = 1.07 > 1.0`."""
        parts = [f"{name} {share:.2f}" for name, share in {**self.always, **self.loaded}.items()]
        processes = len(self.loaded) + len(self.always) + len(self.asleep)
        parts.append(f"{processes} CUDA context{'s' if processes != 1 else ''} {processes * self.context:.2f}")
        asleep = f" ({', '.join(self.asleep)} asleep)" if self.asleep else ""
        return f"GPU {self.gpu}: {' + '.join(parts)} = {self.total:.2f} > 1.0{asleep}"


@dataclass(frozen=True)
class Residency:
    """The on-demand services' claims per GPU over the always-loaded floor; answers what fits together."""

    floors: Mapping[int, GpuFloor] = field(default_factory=dict)
    shares: Mapping[str, Mapping[int, float]] = field(default_factory=dict)  # on-demand service → GPU → share
    sleep_host_bytes: Mapping[str, int] = field(default_factory=dict)  # `unload: sleep` service → weights

    @property
    def on_demand(self) -> list[str]:
        return list(self.shares)

    def conflicts(self, loaded: Iterable[str], asleep: Collection[str] = ()) -> list[Conflict]:
        """The GPUs on which the on-demand services `loaded` (with `asleep` engines sleeping) do not fit."""
        loaded = [name for name in loaded if name in self.shares]
        found = []
        for floor in self.floors.values():
            here = {n: self.shares[n][floor.index] for n in loaded if floor.index in self.shares[n]}
            if not here:
                continue
            sleeping = tuple(n for n in asleep if n not in here and floor.index in self.shares.get(n, {}))
            conflict = Conflict(floor.index, here, floor.always, sleeping, floor.context)
            if conflict.total > 1.0 + 1e-9:
                found.append(conflict)
        return found

    def fits(self, loaded: Iterable[str], asleep: Collection[str] = ()) -> bool:
        return not self.conflicts(loaded, asleep)

    def exclusions(self) -> list[Conflict]:
        """Each pair of on-demand services that cannot be loaded together, with the GPU that decides it."""
        pairs = []
        for a, b in itertools.combinations(self.on_demand, 2):
            conflicts = self.conflicts((a, b))
            if conflicts:
                pairs.append(max(conflicts, key=lambda c: c.total))
        return pairs

    def groups(self) -> list[tuple[str, ...]]:
        """The largest sets of on-demand services that can be loaded together (each not part of a bigger one)."""
        names = self.on_demand
        if len(names) > EXACT_GROUPS:
            return []
        fitting = [
            set(combo)
            for size in range(len(names), 0, -1)
            for combo in itertools.combinations(names, size)
            if self.fits(combo)
        ]
        maximal = [group for group in fitting if not any(group < other for other in fitting)]
        return [tuple(n for n in names if n in group) for group in maximal]

    def sharing(self, name: str) -> list[str]:
        """The other on-demand services on any GPU of `name`."""
        gpus = set(self.shares.get(name, {}))
        return [other for other, mine in self.shares.items() if other != name and gpus & set(mine)]


def make_residency(services: Mapping[str, ServicePlan], inventory: Inventory) -> Residency:
    """The floor of every GPU (its always-loaded services) and each on-demand service's shares."""
    floors = {}
    shares: dict[str, dict[int, float]] = {name: {} for name, sp in services.items() if sp.service.on_demand}
    for gpu in inventory.gpus:
        always = {}
        for name, sp in services.items():
            share = gpu_share(sp, gpu)
            if share is None:
                continue
            if name in shares:
                shares[name][gpu.index] = share
            else:
                always[name] = share
        floors[gpu.index] = GpuFloor(gpu.index, gpu.total_bytes, always)
    sleepers = {
        name: sp.weights_bytes or 0
        for name, sp in services.items()
        if sp.service.on_demand and sp.service.unload == "sleep"
    }
    return Residency(floors, shares, sleepers)


def residency_findings(
    residency: Residency, services: Mapping[str, ServicePlan], host_memory: int | None = None
) -> list[Finding]:
    """Errors: an on-demand service that cannot be loaded even alone beside the always-loaded ones; an
    `unload: sleep` its engine cannot do; sleeping weights that cannot all fit in host memory."""
    findings = [_never_fits(name, conflicts, services[name]) for name in residency.on_demand
                if (conflicts := [c for c in residency.conflicts([name]) if c.always])]  # fmt: skip
    for name, sp in services.items():
        if sp.service.on_demand and sp.service.unload == "sleep" and get_engine(sp.service.engine).sleep is None:
            findings.append(_cannot_sleep(name, sp))
    asleep = sum(residency.sleep_host_bytes.values())
    if host_memory and asleep > host_memory:
        findings.append(_host_memory(residency, asleep, host_memory))
    return findings


def _never_fits(name: str, conflicts: list[Conflict], plan: ServicePlan) -> Finding:
    worst = max(conflicts, key=lambda c: c.total)
    always = ", ".join(worst.always)
    return Finding(
        Severity.ERROR,
        f"{name} cannot be loaded even alone: {worst.describe()}",
        service=name,
        reason=f"on-demand services load beside the always-loaded ones, and {always} hold their share all the time",
        fix=f"give {name} other GPUs, lower a memory_fraction, or make {always} on-demand too",
        code="on-demand-never-fits",
        key=setting_key(name, plan.service, "gpus", "memory_fraction"),
    )


def _cannot_sleep(name: str, plan: ServicePlan) -> Finding:
    engine = get_engine(plan.service.engine)
    return Finding(
        Severity.ERROR,
        f"{name}: {engine.display_name} cannot sleep (free its GPU memory and keep running)",
        service=name,
        reason="`unload: sleep` needs an engine with a sleep mode: vLLM (--enable-sleep-mode) or SGLang "
        "(--enable-memory-saver)",
        fix="set `unload: stop` (the engine is stopped when unloaded and started again when asked for)",
        code="sleep-unsupported",
        key=("services", name, "unload"),
    )


def _host_memory(residency: Residency, asleep: int, host_memory: int) -> Finding:
    each = ", ".join(f"{name} {size / GIB:.1f} GiB" for name, size in residency.sleep_host_bytes.items())
    return Finding(
        Severity.ERROR,
        f"sleeping weights need {asleep / GIB:.1f} GiB of host memory ({each}); this machine has "
        f"{host_memory / GIB:.1f} GiB",
        reason="an engine put to sleep keeps its weights in host memory until it wakes",
        fix="set `unload: stop` on some of them",
        code="sleep-host-memory",
    )

"""Fixtures for simulator tests: simulators in a background thread, or as real processes, on free ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from simtools import SimProcess, ThreadedSim

from servestack.sim import SimConfig


@pytest.fixture
def start_sim() -> Iterator[Callable[..., ThreadedSim]]:
    """Start in-process simulators: `start_sim(max_running=2, time_scale=0.1)`; all stop after the test."""
    started: list[ThreadedSim] = []

    def start(config: SimConfig | None = None, **settings: Any) -> ThreadedSim:
        config = replace(config or SimConfig(port=0), **settings)
        sim = ThreadedSim(config).__enter__()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def sim_process() -> Iterator[Callable[..., SimProcess]]:
    """Start `python -m servestack.sim FLAGS…` processes on free ports; all are stopped after the test."""
    started: list[SimProcess] = []

    def start(*flags: str) -> SimProcess:
        process = SimProcess(*flags)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()

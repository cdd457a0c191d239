"""A real multi-node Ray cluster on this machine, shared by the cluster tests (`pytest -m ray`): a head
with 4 GPUs, two workers with 2 and one without GPUs (bench/harness/ray_local.py says how, and why so).
The environment it sets while it runs reaches the servestack processes the tests start."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

from harness.ray_local import NODES, LocalRayCluster, local_ray_cluster


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[LocalRayCluster]:
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed: pip install 'servestack[ray]'")
    with local_ray_cluster({**NODES, "w3": 0}) as cluster:
        yield cluster

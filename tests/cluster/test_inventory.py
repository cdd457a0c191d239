"""A cluster's inventory from Ray's node entries (`ray.nodes()`), without Ray: names, labels, order, and the
GPUs' names and memory from NVML on the node, else from the GPU type the node declares."""

from __future__ import annotations

from typing import Any

import pytest

from servestack.cluster.inventory import gpus_of, node_of, placement_order
from servestack.errors import InventoryError
from servestack.gpus import GIB


def entry(node_id: str, resources: dict[str, float], *, alive: bool = True, labels: dict[str, str] | None = None):
    info: dict[str, Any] = {"NodeID": node_id, "Alive": alive, "NodeManagerAddress": "10.0.0.9", "Resources": resources}
    info["Labels"] = {"ray.io/node-id": node_id, **(labels or {})}
    return info


HEAD = entry("f" * 56, {"CPU": 8, "GPU": 4, "node:10.0.0.9": 1, "node:__internal_head__": 1, "memory": 1e9})
WORKER = entry(
    "0" * 56,
    {"CPU": 8, "GPU": 2, "w1": 1, "accelerator_type:A10G": 1, "GPU_group_abc": 1, "bundle_group_0_abc": 1},
    labels={"zone": "b"},
)


def test_a_node_is_named_by_its_labels_and_the_head_comes_first() -> None:
    node = node_of(WORKER)
    assert (node.id, node.address, node.labels, node.name) == ("0" * 56, "10.0.0.9", ("w1", "zone=b"), "w1")
    assert node.matches("w1") and node.matches("zone=b") and node.matches("000000") and not node.matches("00")
    assert node_of(HEAD).name == "ffffffff"  # no label: the start of its id
    dead = entry("1" * 56, {"GPU": 8}, alive=False)
    assert [i["NodeID"] for i in placement_order([WORKER, dead, HEAD])] == [HEAD["NodeID"], WORKER["NodeID"]]


def test_gpus_come_from_nvml_on_the_node_up_to_what_ray_hands_out() -> None:
    probed = {"gpus": [("NVIDIA H100 80GB HBM3", 80 * GIB, 79 * GIB)] * 8, "cuda": "12.4"}
    gpus = gpus_of(HEAD, probed)
    assert [(g.index, g.name, g.free_bytes) for g in gpus] == [(i, "NVIDIA H100 80GB HBM3", 79 * GIB) for i in range(4)]


def test_without_nvml_the_declared_gpu_type_gives_names_and_memory() -> None:
    gpus = gpus_of(WORKER, None)
    assert [(g.index, g.name, round(g.total_bytes / GIB, 1)) for g in gpus] == [(0, "A10G", 22.5), (1, "A10G", 22.5)]


@pytest.mark.parametrize(("declared", "said"), [({}, "declares no accelerator_type"), (
    {"accelerator_type:TPU-V4": 1}, "declares accelerator_type:TPU-V4, which servestack does not know")])  # fmt: skip
def test_gpus_of_unknown_memory_are_an_error_that_says_how_to_declare_them(declared: dict, said: str) -> None:
    with pytest.raises(InventoryError) as info:
        gpus_of(entry("2" * 56, {"GPU": 2, "w9": 1, **declared}), None)
    assert f"node w9 ({'2' * 56}) has 2 GPU(s)" in info.value.message and said in info.value.message
    assert "accelerator_type:H100" in (info.value.fix or "")

"""Placement across a cluster's nodes: each replica's GPUs on one node, `nodes:` honoured, pinned GPUs are a
node's own, a replica that fits nowhere names the largest free block; the JSON and the table show where."""

from __future__ import annotations

import json

import pytest
from plan_fixtures import MIXTRAL, facts, stack

from servestack.cli.planning import print_plan
from servestack.gpus import Inventory, Node, cluster_inventory, parse_inventory
from servestack.plan import Plan, make_plan
from servestack.plan.export import plan_to_dict

HEAD, W1, W2 = "a" * 56, "b" * 56, "c" * 56


def cluster(head: str = "4xH100-80GB", w1: str = "2xH100-80GB", w2: str = "2xA10G") -> Inventory:
    nodes = [
        (Node(HEAD, "10.0.0.1", ("head",)), parse_inventory(head).gpus),
        (Node(W1, "10.0.0.2", ("w1", "zone=b")), parse_inventory(w1).gpus),
        (Node(W2, "10.0.0.3", ("w2",)), parse_inventory(w2).gpus),
    ]
    return cluster_inventory(nodes, "ray cluster at test")


def plan_on(text: str, inventory: Inventory) -> Plan:
    parsed = stack(text)
    known = {n: facts(s.model) for n, s in parsed.services.items() if s.engine != "sim"}
    return make_plan(parsed, inventory, known)


def where(plan: Plan, service: str) -> list[tuple[str | None, tuple[int, ...]]]:
    return [(p.node, p.gpus) for p in plan.services[service].places]


SIMS = """
cluster: {kind: ray}
services:
  big: {engine: sim, model: sim, tp: 2, replicas: 3}
  small: {engine: sim, model: sim, tp: 1, replicas: 2}
"""


def test_replicas_are_placed_on_one_node_each_with_gpus_of_their_own() -> None:
    plan = plan_on(SIMS, cluster())
    assert not plan.errors
    assert where(plan, "big") == [(HEAD, (0, 1)), (HEAD, (2, 3)), (W1, (0, 1))]
    assert where(plan, "small") == [(W2, (0,)), (W2, (1,))]
    used = [g for sp in plan.services.values() for g in sp.all_gpus]
    assert len(used) == len(set(used)) == 8  # no GPU of the cluster given twice


def test_tensor_parallelism_never_spans_nodes() -> None:
    # Two GPUs free on the head and two on w1: four, but no node has four, so TP 4 goes to w2.
    text = f"""
cluster: {{kind: ray}}
services:
  first: {{engine: vllm, model: {MIXTRAL}, tp: 2, context_length: 8192}}
  wide: {{engine: vllm, model: {MIXTRAL}, tp: 4, context_length: 8192}}
"""
    plan = plan_on(text, cluster(head="2xH100-80GB", w1="2xH100-80GB", w2="4xH100-80GB"))
    assert not plan.errors
    assert where(plan, "first") == [(HEAD, (0, 1))]
    assert where(plan, "wide") == [(W2, (0, 1, 2, 3))]
    assert plan.services["wide"].gpus_of(0) == (0, 1, 2, 3)  # CUDA_VISIBLE_DEVICES on w2


def test_a_replica_that_fits_on_no_node_names_the_largest_free_block() -> None:
    text = """
cluster: {kind: ray}
services:
  wide: {engine: sim, model: sim, tp: 3, replicas: 2}
"""
    [error] = plan_on(text, cluster()).errors
    assert error.code == "not-enough-gpus" and error.key == ("services", "wide", "tp")
    assert "replica 1 of TP 3 fits on no node" in error.message
    assert "the largest free block is 2 GPU(s) on node w1" in error.message


def test_nodes_pins_a_service_to_the_nodes_it_names() -> None:
    text = """
cluster: {kind: ray}
services:
  a: {engine: sim, model: sim, tp: 1, replicas: 2, nodes: [zone=b]}
  b: {engine: sim, model: sim, tp: 1, nodes: [cccccccc]}
  c: {engine: sim, model: sim, nodes: [w2]}
"""
    plan = plan_on(text, cluster())
    assert not plan.errors
    assert where(plan, "a") == [(W1, (0,)), (W1, (1,))]
    assert where(plan, "b") == [(W2, (0,))]
    assert where(plan, "c") == [(W2, ())]  # no GPU: on the one node it may use
    assert plan.services["c"].nodes == (W2,)


def test_pinned_gpus_are_indices_on_the_chosen_node() -> None:
    text = """
cluster: {kind: ray}
services:
  a: {engine: sim, model: sim, gpus: [1], nodes: [w1], memory_fraction: 0.5}
  b: {engine: sim, model: sim, gpus: [1], nodes: [10.0.0.2], memory_fraction: 0.6}
"""
    plan = plan_on(text, cluster())
    assert where(plan, "a") == where(plan, "b") == [(W1, (1,))]
    [error] = plan.errors  # both on w1's GPU 1: 0.5 + 0.6
    assert error.code == "gpu-over-committed" and "GPU 1 of node bbbbbbbb is over-committed" in error.message


@pytest.mark.parametrize(
    ("text", "inventory", "code", "said"),
    [
        ("cluster: {kind: ray}\nservices:\n  a: {engine: sim, model: sim, nodes: [w9]}", cluster(), "node-unknown",
         "no live node of the cluster matches 'w9'"),
        ("services:\n  a: {engine: sim, model: sim, nodes: [w1]}", parse_inventory("2xH100"), "nodes-without-cluster",
         "`nodes` names cluster nodes"),
        ("cluster: {kind: ray}\nservices:\n  a: {engine: sim, model: sim, gpus: [3], nodes: [w1]}", cluster(),
         "gpu-missing", "GPU 3 does not exist on one node"),
    ],
)  # fmt: skip
def test_nodes_that_cannot_be_found_are_errors_at_their_line(
    text: str, inventory: Inventory, code: str, said: str
) -> None:
    plan = plan_on(text, inventory)
    [error] = plan.errors
    assert error.code == code and said in error.message
    line = text.count("\n") + 1  # the service's line: the last
    assert plan.stack.locate(error.key).startswith(f"<test>:{line}: services.a.")


def test_json_and_table_show_each_replica_node_gpus_and_memory() -> None:
    text = f"""
cluster: {{kind: ray}}
services:
  chat: {{engine: vllm, model: {MIXTRAL}, tp: 2, replicas: 2, context_length: 8192}}
"""
    plan = plan_on(text, cluster())
    data = json.loads(json.dumps(plan_to_dict(plan)))
    replicas = data["services"]["chat"]["replicas"]
    assert [(r["node_name"], r["gpus"]) for r in replicas] == [("head", [0, 1]), ("head", [2, 3])]
    assert all(r["memory_per_gpu"]["weights_bytes"] > 0 for r in replicas)
    assert [n["name"] for n in data["inventory"]["nodes"]] == ["head", "w1", "w2"]
    from rich.console import Console

    out = Console(width=200, record=True)
    print_plan(out, plan, "stack.yaml")
    text_out = out.export_text()
    assert "3 nodes — head: 4× H100-80GB; w1: 2× H100-80GB; w2: 2× A10G" in text_out
    assert "#0: node head: GPUs 0,1 (2× H100-80GB, 79.6 GiB each)" in text_out
    assert "#1: node head: GPUs 2,3" in text_out

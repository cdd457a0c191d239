"""Inventories parsed from a spec, and the GPU table."""

from __future__ import annotations

import pytest

from servestack.errors import InventoryError
from servestack.gpus import GIB, GPU_MODELS, GpuModel, find_gpu_model, parse_inventory


@pytest.mark.parametrize(
    ("spec", "count", "name", "gib"),
    [
        ("4xH200", 4, "H200", 140.4),
        ("2xH100-80GB", 2, "H100-80GB", 79.6),
        ("1xA10G", 1, "A10G", 22.5),
        ("8x141GiB", 8, "GPU 141GiB", 141.0),
        ("1x22.3GiB", 1, "GPU 22.3GiB", 22.3),
        ("1xRTX-4090", 1, "RTX-4090", 24.0),
        ("H100", 1, "H100-80GB", 79.6),
        ("2 x h100_80gb", 2, "H100-80GB", 79.6),
        ("1x80GB", 1, "GPU 80GB", 74.5),  # GB is decimal
    ],
)
def test_spec(spec: str, count: int, name: str, gib: float) -> None:
    inventory = parse_inventory(spec)
    assert len(inventory.gpus) == count
    assert {g.name for g in inventory.gpus} == {name}
    assert round(inventory.gpus[0].total_bytes / GIB, 1) == gib
    assert inventory.indices == list(range(count))
    assert all(g.free_bytes is None for g in inventory.gpus)  # planning elsewhere: all memory free


def test_mixed_groups_are_numbered_in_order() -> None:
    inventory = parse_inventory("2xH100-80GB,1xA10G")
    assert [(g.index, g.name) for g in inventory.gpus] == [(0, "H100-80GB"), (1, "H100-80GB"), (2, "A10G")]


@pytest.mark.parametrize("spec", ["cpu", "CPU", "none"])
def test_cpu(spec: str) -> None:
    inventory = parse_inventory(spec)
    assert inventory.is_cpu and inventory.gpus == ()


@pytest.mark.parametrize(
    ("spec", "message"),
    [("2xA100", "unknown GPU 'A100'"), ("0xH100", "at least one"), ("4xH200,", "empty group"), ("1x0GiB", "memory")],
)
def test_bad_specs_name_the_problem(spec: str, message: str) -> None:
    with pytest.raises(InventoryError, match=message):
        parse_inventory(spec)


def test_an_ambiguous_name_suggests_the_variants() -> None:
    with pytest.raises(InventoryError) as caught:
        parse_inventory("2xA100")
    assert caught.value.fix is not None and "A100-80GB" in caught.value.fix


@pytest.mark.parametrize("model", GPU_MODELS, ids=lambda m: m.name)
def test_every_table_entry_parses_by_name_and_alias(model: GpuModel) -> None:
    for name in (model.name, *model.aliases):
        assert find_gpu_model(name) == model
    assert 8 * GIB < model.total_mib * 2**20 < 256 * GIB


@pytest.mark.parametrize(
    ("nvml_name", "table_name"),
    [
        ("NVIDIA H100 80GB HBM3", "H100-80GB"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA A10G", "A10G"),
        ("NVIDIA GeForce RTX 4090", "RTX-4090"),
        ("Tesla T4", "T4"),
        ("NVIDIA A100-SXM4-80GB", "A100-80GB"),
    ],
)
def test_nvml_names_match_the_table(nvml_name: str, table_name: str) -> None:
    model = find_gpu_model(nvml_name)
    assert model is not None and model.name == table_name


def test_reference_figures() -> None:
    # engines.md: SGLang's server_args.py quotes an H100 at 81559 MiB; a vLLM log shows an RTX 4090 at 23.99 GiB.
    h100, rtx4090 = find_gpu_model("H100-80GB"), find_gpu_model("RTX-4090")
    assert h100 is not None and h100.total_mib == 81559
    assert rtx4090 is not None and round(rtx4090.total_mib / 1024, 2) == 23.99

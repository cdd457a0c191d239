"""Common data-centre and consumer GPUs with the memory their driver reports, for `--gpus 4xH200`.

`total_mib` is what `nvidia-smi --query-gpu=memory.total` (NVML `memory.total`) reports for the card,
not the marketing figure: an "80GB" H100 reports 81559 MiB = 79.6 GiB, and that is what engines size
their fractions against. Engines lose a further ~0.5–1.5 GiB to the CUDA context; the planner accounts
for that separately.

Sources and confidence: H100 81559 MiB is quoted in SGLang's `server_args.py` comments
(shared/reference/engines.md §2.3); RTX 4090 24564 MiB = 23.99 GiB is in a vLLM startup log (§3.3).
The other figures are the values commonly printed by `nvidia-smi` / `rocm-smi` on those cards as
recalled by the maintainers (not measured here): treat them as ±1% and prefer NVML or an explicit
size (`--gpus 8x141GiB`) when it matters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MIB = 2**20


@dataclass(frozen=True)
class GpuModel:
    name: str  # canonical spec name
    total_mib: int
    aliases: tuple[str, ...] = ()


GPU_MODELS: tuple[GpuModel, ...] = (
    # NVIDIA data centre
    GpuModel("B200", 183359, ("B200-192GB",)),
    GpuModel("H200", 143771, ("H200-141GB", "H200-SXM", "H200-NVL")),
    GpuModel("H100-80GB", 81559, ("H100", "H100-SXM", "H100-PCIE", "H100-80GB-HBM3")),
    GpuModel("H100-NVL", 95830, ("H100-94GB",)),
    GpuModel("H20", 97871, ("H20-96GB",)),
    GpuModel("GH200", 97871, ("GH200-96GB",)),
    GpuModel("A100-80GB", 81920, ("A100-SXM4-80GB", "A100-PCIE-80GB")),
    GpuModel("A100-40GB", 40960, ("A100-SXM4-40GB", "A100-PCIE-40GB")),
    GpuModel("L40S", 46068, ("L40S-48GB",)),
    GpuModel("L40", 46068, ("L40-48GB",)),
    GpuModel("A40", 46068, ("A40-48GB",)),
    GpuModel("A10G", 23028, ("A10G-24GB",)),
    GpuModel("A10", 23028, ("A10-24GB",)),
    GpuModel("L4", 23034, ("L4-24GB",)),
    GpuModel("T4", 15360, ("T4-16GB", "TESLA-T4")),
    GpuModel("V100-32GB", 32510, ("V100-SXM2-32GB",)),
    GpuModel("V100-16GB", 16160, ("V100", "V100-SXM2-16GB")),
    # NVIDIA workstation and consumer
    GpuModel("RTX-6000-ADA", 49140, ("RTX6000-ADA", "RTX-6000-ADA-48GB")),
    GpuModel("RTX-A6000", 49140, ("A6000",)),
    GpuModel("RTX-5090", 32607, ("5090", "GEFORCE-RTX-5090")),
    GpuModel("RTX-4090", 24564, ("4090", "GEFORCE-RTX-4090")),
    GpuModel("RTX-3090", 24576, ("3090", "GEFORCE-RTX-3090")),
    GpuModel("RTX-4080", 16376, ("4080", "GEFORCE-RTX-4080")),
    # AMD (planning only; NVML does not see them)
    GpuModel("MI300X", 196288, ("MI300X-192GB",)),
)


def normalize(name: str) -> str:
    """`NVIDIA GeForce RTX 4090` and `rtx_4090` → `RTX4090`: case, vendor words and punctuation dropped."""
    upper = name.upper().replace("NVIDIA", "").replace("GEFORCE", "").replace("TESLA", "")
    return re.sub(r"[^A-Z0-9]", "", upper)


def find_gpu_model(name: str) -> GpuModel | None:
    wanted = normalize(name)
    for model in GPU_MODELS:
        if wanted in {normalize(n) for n in (model.name, *model.aliases)}:
            return model
    return None


def known_names() -> list[str]:
    return [model.name for model in GPU_MODELS]

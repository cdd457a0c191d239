"""The GPUs a plan is made for: `Inventory` from NVML on this machine, or parsed from a spec (`4xH200`)."""

from servestack.gpus.inventory import GIB, Gpu, Inventory, Node, cluster_inventory
from servestack.gpus.nvml import detect_inventory, read_nvml_inventory
from servestack.gpus.spec import parse_inventory
from servestack.gpus.table import GPU_MODELS, GpuModel, find_gpu_model
from servestack.gpus.usage import gpu_memory_by_group

__all__ = [
    "GIB",
    "GPU_MODELS",
    "Gpu",
    "GpuModel",
    "Inventory",
    "Node",
    "cluster_inventory",
    "detect_inventory",
    "find_gpu_model",
    "gpu_memory_by_group",
    "parse_inventory",
    "read_nvml_inventory",
]

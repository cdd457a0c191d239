"""What the planner knows about a model: `ModelFacts` from config.json, GGUF, safetensors or the catalog."""

from servestack.modelinfo.catalog import Catalog
from servestack.modelinfo.config import facts_from_config, read_config_file
from servestack.modelinfo.facts import MLA, ModelFacts, MoE, Quantization, WeightLayout
from servestack.modelinfo.ggufinfo import gguf_facts, read_gguf_header
from servestack.modelinfo.lookup import cached_snapshot, find_facts, hf_cache_dir, local_facts
from servestack.modelinfo.params import count_active_parameters, count_parameters
from servestack.modelinfo.safetensorsinfo import TensorBytes, model_safetensors, read_safetensors_header, tensor_bytes

__all__ = [
    "MLA",
    "Catalog",
    "MoE",
    "ModelFacts",
    "Quantization",
    "TensorBytes",
    "WeightLayout",
    "cached_snapshot",
    "count_active_parameters",
    "count_parameters",
    "facts_from_config",
    "find_facts",
    "gguf_facts",
    "hf_cache_dir",
    "local_facts",
    "model_safetensors",
    "read_config_file",
    "read_gguf_header",
    "read_safetensors_header",
    "tensor_bytes",
]

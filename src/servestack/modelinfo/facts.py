"""`ModelFacts`: what the planner needs to know about a model, whatever it was read from.

Facts are plain data. They come from a HF `config.json` (`config.py`), a GGUF header (`ggufinfo.py`),
safetensors headers (`safetensorsinfo.py`) or the built-in catalog (`catalog.py`); the planner never
cares which.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MoE:
    """Mixture-of-experts layers: routed experts, how many a token uses, and their MLP width."""

    experts: int
    experts_per_token: int
    intermediate_size: int  # per expert (DeepSeek/GLM `moe_intermediate_size`, Mixtral `intermediate_size`)
    shared_intermediate_size: int = 0  # all shared experts together (0: none)
    first_dense_layers: int = 0  # DeepSeek/GLM `first_k_dense_replace`: leading layers with a dense MLP
    layer_freq: int = 1  # every n-th layer (after the dense ones) is an MoE layer


@dataclass(frozen=True)
class MLA:
    """Multi-head latent attention (DeepSeek V2/V3): the KV cache holds one compressed latent per token."""

    kv_lora_rank: int
    qk_rope_head_dim: int
    qk_nope_head_dim: int
    v_head_dim: int
    q_lora_rank: int | None = None

    @property
    def latent_dim(self) -> int:
        """Elements cached per token per layer: the KV latent plus the shared RoPE key."""
        return self.kv_lora_rank + self.qk_rope_head_dim


@dataclass(frozen=True)
class Quantization:
    """A checkpoint's quantisation as far as memory goes (`modelinfo/quant.py` reads and prices it).

    None fields mean the method's default. `keep` are the module patterns the checkpoint leaves
    unquantised (`modules_to_not_convert`, `ignore`, ...), matched as vLLM matches them.
    """

    method: str  # fp8, fbgemm_fp8, awq, gptq, compressed-tensors, bitsandbytes, mxfp4, ... as the config names it
    bits: float | None = None
    group_size: int | None = None  # weights per scale; -1: per channel
    zero_point: bool | None = None
    float_weights: bool = False
    double_quant: bool = False  # bitsandbytes' nested quantisation of its scales
    keep: tuple[str, ...] = ()


@dataclass(frozen=True)
class WeightLayout:
    """Weight bytes by place in the model: what llama.cpp puts on each device follows it.

    Exact when read from a GGUF file's tensor headers; estimated from the quantisation mix otherwise.
    """

    embedding: int  # the token embedding (llama.cpp keeps it in host memory)
    output: int  # the output projection; 0 when tied to the embedding
    layers: tuple[int, ...]  # each repeating block
    other: int = 0  # anything else (final norm)

    @property
    def total(self) -> int:
        return self.embedding + self.output + sum(self.layers) + self.other


@dataclass(frozen=True)
class ModelFacts:
    """The shape, size and numeric format of one model.

    `weight_bytes` is exact when read from files (GGUF tensor sizes, safetensors tensor bytes) and None
    when only the config is known; the planner then derives it from the parameters and the quantisation.
    """

    model_id: str
    source: str  # where the facts came from: "catalog", "config.json: /path", "gguf: /path", ...
    architecture: str  # HF `architectures[0]`, or the GGUF `general.architecture`
    model_type: str
    layers: int
    hidden_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    intermediate_size: int
    parameters: int
    dtype: str = "bfloat16"  # checkpoint dtype ("bfloat16", "float16", "float32"; "gguf" for GGUF files)
    max_context: int | None = None
    quantization: str | None = None  # "fp8", "awq", "gptq", … or the GGUF file type ("Q4_K_M")
    quant: Quantization | None = None  # the checkpoint's quantization_config, when it has one
    weight_block_size: tuple[int, int] | None = None  # block-quantised FP8 checkpoints: (128, 128)
    weight_bytes: int | None = None
    layout: WeightLayout | None = None  # GGUF files: bytes per block, embedding and output
    moe: MoE | None = None
    mla: MLA | None = None
    tie_word_embeddings: bool = False
    sliding_window: int | None = None
    sliding_window_layers: int = 0  # layers that attend within the window only (the rest see the whole context)
    qkv_bias: bool = False
    qk_norm: bool = False
    router_bias: bool = False
    vision_heads: int | None = None  # a vision tower split by TP too (Qwen2-VL ViT: 16)
    vision_parameters: int = 0
    # The vision config's own `num_hidden_layers` and `hidden_size` (None: absent; SGLang sizes by them)
    vision_layers: int | None = None
    vision_width: int | None = None
    mtp_layers: int = 0  # multi-token-prediction layers in the checkpoint (not loaded without speculation)

    @property
    def is_multimodal(self) -> bool:
        """It has a vision encoder (a `vision_config`)."""
        return self.vision_parameters > 0 or self.vision_width is not None

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    @property
    def is_mla(self) -> bool:
        return self.mla is not None

    @property
    def embedding_parameters(self) -> int:
        """Input embedding plus LM head (one matrix when tied): kept 16-bit by most quantisations."""
        return self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)

    @property
    def padded_vocab_size(self) -> int:
        """The vocabulary padded to a multiple of 64, as vLLM and SGLang shard it."""
        return -(-self.vocab_size // 64) * 64

"""What vLLM's startup log states (every wording in tests/plan/corpus, from 0.2 to 0.32).

- KV tokens: V1 `GPU KV cache size: 178,880 tokens` (`CPU KV cache size: …` on the CPU build); V0 and
  early V1 `# GPU blocks: 5691` (`# CUDA blocks`, `# cuda blocks` in 0.7–0.8), blocks of 16 tokens; a
  failed start's `maximum number of tokens that can be stored in KV cache (23648)`.
- KV bytes per GPU: V1 `Available KV cache memory: 8.11 GiB` (the CPU build: `Explicitly set (1.0/23.54)
  GiB for KV cache`); V0 `the rest of the memory reserved for KV Cache is 11.12GiB` or, late 2024,
  `kv_cache_size=3.81GiB`. Each rank prints its own; the engine sizes every rank by the smallest.
- Weights per GPU: `Loading model weights took 14.9595 GB` (until 0.7; GB means GiB), `Model loading took
  34.4340 GiB`; failing those, V0's rounded `model weights take 14.96GiB`.
- Version: `Initializing a V1 LLM engine (v0.32.0)`, `Initializing an LLM engine (v0.6.4)`, `vLLM API
  server version 0.9.2`.
"""

from __future__ import annotations

import re

from servestack.engines.memory.vllm import BLOCK_TOKENS
from servestack.engines.startup.base import GIB, NUMBER, Allocation, Evidence, matched, number, scaled

TOKENS = re.compile(rf"(?:GPU|CPU) KV cache size: ({NUMBER}) tokens")
BLOCKS = re.compile(r"(?:GPU|CUDA|cuda) blocks: (\d+)")
TOO_FEW = re.compile(r"maximum number of tokens that can be stored in KV cache \((\d+)\)")
KV = re.compile(
    rf"Available KV cache memory: ({NUMBER}) GiB|reserved for KV Cache is ({NUMBER}) ?GiB"
    rf"|kv_cache_size=({NUMBER}) ?GiB|Explicitly set \(({NUMBER})/{NUMBER}\) GiB for KV cache"
)
WEIGHTS_TOOK = re.compile(rf"(?:Loading model weights|Model loading) took ({NUMBER}) Gi?B")
WEIGHTS_TAKE = re.compile(rf"model weights take ({NUMBER}) ?GiB")
VERSION = re.compile(r"Initializing an? (?:V1 )?LLM engine \(v([^)\s]+)\)|vLLM API server version (\S+)")


class VllmStartupLog:
    def parse(self, log: str) -> Allocation:
        seen = Evidence()
        kv = [scaled(matched(m), GIB) for m in seen.matches(KV, log)]
        took = [scaled(m.group(1), GIB) for m in seen.matches(WEIGHTS_TOOK, log)]
        weights = took or [scaled(m.group(1), GIB) for m in seen.matches(WEIGHTS_TAKE, log)]
        version = next((matched(m) for m in seen.matches(VERSION, log)), None)
        return Allocation(
            kv_tokens=_kv_tokens(log, seen),
            kv_bytes=min(kv) if kv else None,
            weights_bytes=max(weights) if weights else None,
            version=version,
            lines=seen.kept(),
        )


def _kv_tokens(log: str, seen: Evidence) -> int | None:
    """The stated tokens, else the blocks (of 16 tokens), else the count a failed start names."""
    for pattern, scale in ((TOKENS, 1), (BLOCKS, BLOCK_TOKENS), (TOO_FEW, 1)):
        found = [int(number(m.group(1))) * scale for m in seen.matches(pattern, log)]
        if found:
            return found[-1]
    return None

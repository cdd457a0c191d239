"""What mistral.rs's startup log states (`mistralrs-core/src/paged_attention/mod.rs` `calculate_cache_config`,
the same wording in `mistralrs serve` and `mistralrs-server`):

    Allocating 112 MB for PagedAttention KV cache per GPU
    Using PagedAttention with block size 32 and 128 GPU blocks: available context length is 4096 tokens

MB is MiB (`SIZE_IN_MB` = 1024 × 1024). Without PagedAttention (the CPU, Metal without it, NCCL tensor
parallelism) it prints neither line, and there is nothing to read. Weights are not stated.
"""

from __future__ import annotations

import re

from servestack.engines.startup.base import MIB, Allocation, Evidence, scaled

POOL = re.compile(r"Allocating (\d+) MB for PagedAttention KV cache per GPU")
TOKENS = re.compile(r"available context length is (\d+) tokens")


class MistralRsStartupLog:
    def parse(self, log: str) -> Allocation:
        seen = Evidence()
        pool = [scaled(m.group(1), MIB) for m in seen.matches(POOL, log)]
        tokens = [int(m.group(1)) for m in seen.matches(TOKENS, log)]
        return Allocation(
            kv_tokens=tokens[-1] if tokens else None,
            kv_bytes=pool[-1] if pool else None,
            lines=seen.kept(),
        )

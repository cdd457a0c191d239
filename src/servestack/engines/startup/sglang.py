"""What SGLang's startup log states (every wording in tests/plan/corpus, early 2025 to mid 2026).

Each TP rank prints its own lines, tagged `[… TP3]` (`DP0 TP0` with data-parallel attention). SGLang's
"GB" is GiB (`get_available_gpu_memory` divides by 1 << 30).

- KV tokens: `KV Cache is allocated. #tokens: 367404, …` (from about March 2025), or the scheduler's
  `max_total_num_tokens=444372, …` (every version).
- KV bytes per GPU: the same line's `K size: 8.23 GB, V size: 8.23 GB` (K + V) or, for MLA, `KV size: 43.67 GB`.
- Weights per GPU: `Load weight end. … avail mem=103.71 GB, mem usage=81.66 GB.`; builds before May 2025
  print no `mem usage`, which SGLang computes as the free memory at `Load weight begin. avail mem=78.81 GB`
  less that at the end (`model_runner.py` `load_model`), so the same difference is taken here, per rank.
"""

from __future__ import annotations

import re

from servestack.engines.startup.base import GIB, NUMBER, Allocation, Evidence, line_of, matched, number, scaled

RANK = re.compile(r"\[[^\]\n]*?((?:DP\d+ )?TP\d+)\]")  # a line's rank tag: `[2025-02-13 07:27:48 TP0]`
TOKENS = re.compile(r"KV Cache is allocated\.[^\n]*?#tokens: (\d+)|max_total_num_tokens=(\d+)")
KV = re.compile(
    rf"KV Cache is allocated\.[^\n]*?(?:K size: ({NUMBER}) GB, V size: ({NUMBER}) GB|KV size: ({NUMBER}) GB)"
)
BEGIN = re.compile(rf"Load weight begin\. avail mem=({NUMBER}) GB")
END = re.compile(rf"Load weight end\.[^\n]*?avail mem=({NUMBER}) GB(?:, mem usage=({NUMBER}) GB)?")


class SglangStartupLog:
    def parse(self, log: str) -> Allocation:
        seen = Evidence()
        tokens = [int(matched(m)) for m in seen.matches(TOKENS, log)]
        kv = [_kv_bytes(m) for m in seen.matches(KV, log)]
        return Allocation(
            kv_tokens=tokens[-1] if tokens else None,
            kv_bytes=min(kv) if kv else None,
            weights_bytes=_weights(log, seen),
            lines=seen.kept(),
        )


def _kv_bytes(match: re.Match[str]) -> int:
    k, v, mla = match.groups()
    return scaled(mla, GIB) if mla is not None else scaled(k, GIB) + scaled(v, GIB)


def _weights(log: str, seen: Evidence) -> int | None:
    """The largest rank's `mem usage`, or its free memory before loading less after."""
    before = {_rank(log, m): number(m.group(1)) for m in seen.matches(BEGIN, log)}
    used = []
    for m in seen.matches(END, log):
        rank, after, usage = _rank(log, m), m.group(1), m.group(2)
        if usage is not None:
            used.append(number(usage))
        elif rank in before:
            used.append(before[rank] - number(after))
    return round(max(used) * GIB) if used else None


def _rank(log: str, match: re.Match[str]) -> str:
    """The rank that printed the line of `match` (empty for an untagged line)."""
    found = RANK.search(line_of(log, match)[1])
    return found.group(1) if found else ""

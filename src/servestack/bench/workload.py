"""Workloads for `servestack bench`: conversations built deterministically from a seed.

Every dataset is a list of `Conversation`s; a single-shot dataset has one turn each. Lengths are
counted in words drawn from short English words (at most six letters), which most tokenizers
(and the simulator's) count as about one token each, so `--input-len 256` is close to 256 prompt
tokens without shipping a tokenizer. The real counts come back in each answer's `usage`.

- `random`: independent prompts, no prefix shared between requests.
- `shared-prefix`: groups of prompts that share a long system prompt (what prefix caches and
  cache-aware routing are for).
- `multi-turn`: conversations whose later turns resend the whole history, answers included.
- `FILE.jsonl`: one object per line, `{"prompt": ...}`, `{"messages": [...]}` or `{"turns": [...]}`,
  optionally with `max_tokens`.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from servestack.errors import BenchError

WORDS = (
    "time", "person", "year", "way", "day", "thing", "man", "world", "life", "hand", "part", "child", "eye",
    "woman", "place", "work", "week", "case", "point", "number", "group", "fact", "water", "money", "month", "lot",
    "right", "study", "book", "job", "word", "issue", "side", "kind", "head", "house", "friend", "father", "power",
    "hour", "game", "line", "end", "member", "law", "car", "city", "name", "team", "minute", "idea", "kid", "body",
    "back", "parent", "face", "others", "level", "office", "door", "health", "art", "war", "party", "result",
    "change", "noon", "reason", "girl", "guy", "moment", "air", "police", "boy", "age", "sense", "force", "market",
    "focus", "model", "plan", "small", "large", "early", "young", "good", "new", "first", "last", "long", "great",
    "little", "own", "other", "old", "big", "high", "right", "public", "bad", "same", "able", "river", "stone",
    "cloud", "light", "sound", "field", "paper", "glass", "metal", "plant", "green", "quiet", "sharp", "clear",
    "cold", "warm", "learn", "speak", "build", "write", "carry", "bring", "think", "start", "begin", "leave",
    "call", "tell", "show", "hear", "play", "run", "move", "live", "hold", "stand", "lose", "pay", "meet", "sit",
    "send", "grow", "open", "walk", "win", "offer", "serve", "die", "report", "spend", "stay", "fall",
)  # fmt: skip

DATASETS = ("random", "shared-prefix", "multi-turn")


@dataclass(frozen=True, slots=True)
class Turn:
    """One user message and how many tokens to ask for in the answer."""

    text: str
    max_tokens: int


@dataclass(frozen=True, slots=True)
class Conversation:
    """What one client session sends: a system prompt (or prior messages) and one or more turns."""

    turns: tuple[Turn, ...]
    system: str | None = None
    history: tuple[dict[str, Any], ...] = ()  # messages given verbatim before the first turn (from a file)
    group: int | None = None  # shared-prefix group, for reports


@dataclass(frozen=True)
class Workload:
    name: str
    conversations: tuple[Conversation, ...]

    @property
    def requests(self) -> int:
        return sum(len(c.turns) for c in self.conversations)

    def cycle(self) -> Iterator[Conversation]:
        """The conversations in order, again and again (a duration-bound run may need more than there are)."""
        if not self.conversations:
            raise BenchError(f"the {self.name} workload holds no requests")
        while True:
            yield from self.conversations


def random_text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choices(WORDS, k=max(1, words)))


def random_workload(count: int, input_len: int, output_len: int, seed: int) -> Workload:
    rng = random.Random(seed)
    conversations = tuple(Conversation((Turn(random_text(rng, input_len), output_len),)) for _ in range(count))
    return Workload("random", conversations)


def shared_prefix_workload(
    groups: int, per_group: int, system_len: int, question_len: int, output_len: int, seed: int
) -> Workload:
    """`groups` system prompts of `system_len` words, each shared by `per_group` questions; order shuffled."""
    rng = random.Random(seed)
    systems = [f"Group {g}. " + random_text(rng, system_len) for g in range(groups)]
    conversations = [
        Conversation((Turn(random_text(rng, question_len), output_len),), system=systems[g], group=g)
        for g in range(groups)
        for _ in range(per_group)
    ]
    rng.shuffle(conversations)
    return Workload("shared-prefix", tuple(conversations))


def multi_turn_workload(count: int, turns: int, turn_len: int, output_len: int, seed: int) -> Workload:
    rng = random.Random(seed)
    conversations = tuple(
        Conversation(tuple(Turn(random_text(rng, turn_len), output_len) for _ in range(turns))) for _ in range(count)
    )
    return Workload("multi-turn", conversations)


def file_workload(path: Path, output_len: int) -> Workload:
    """Conversations from a JSONL file; see the module docstring for the accepted line shapes."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise BenchError(f"cannot read the dataset {path}: {exc.strerror}") from None
    conversations = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            conversations.append(_conversation_from_line(path, number, line, output_len))
    if not conversations:
        raise BenchError(f"the dataset {path} holds no requests")
    return Workload(path.name, tuple(conversations))


def _conversation_from_line(path: Path, number: int, line: bytes, output_len: int) -> Conversation:
    where = f"{path}:{number}"
    try:
        item = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise BenchError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(item, dict):
        raise BenchError(f"{where}: expected a JSON object")
    max_tokens = item.get("max_tokens", output_len)
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise BenchError(f"{where}: max_tokens must be a positive integer")
    if isinstance(item.get("prompt"), str):
        return Conversation((Turn(item["prompt"], max_tokens),))
    if isinstance(item.get("turns"), list) and item["turns"] and all(isinstance(t, str) for t in item["turns"]):
        return Conversation(tuple(Turn(t, max_tokens) for t in item["turns"]))
    messages = item.get("messages")
    if isinstance(messages, list) and messages and all(isinstance(m, dict) for m in messages):
        *history, last = messages
        if last.get("role", "user") == "user" and isinstance(last.get("content"), str):
            return Conversation((Turn(last["content"], max_tokens),), history=tuple(history))
    raise BenchError(
        f"{where}: expected one of prompt (a string), turns (a list of strings) or messages "
        "(a list ending with a user message)"
    )


def build_workload(
    dataset: str, *, requests: int, input_len: int, output_len: int, seed: int, turns: int = 4
) -> Workload:
    """The named dataset (or a JSONL file) with enough conversations for about `requests` requests."""
    count = max(1, requests)
    if dataset == "random":
        return random_workload(count, input_len, output_len, seed)
    if dataset == "shared-prefix":
        per_group = 16
        groups = max(1, -(-count // per_group))
        return shared_prefix_workload(groups, per_group, input_len, max(8, input_len // 16), output_len, seed)
    if dataset == "multi-turn":
        return multi_turn_workload(max(1, -(-count // turns)), turns, input_len, output_len, seed)
    path = Path(dataset)
    if path.suffix == ".jsonl" or path.exists():
        return file_workload(path, output_len)
    raise BenchError(
        f"unknown dataset {dataset!r}", fix=f"use one of {', '.join(DATASETS)} or the path of a .jsonl file"
    )

"""A deterministic stand-in tokenizer: text → stable token ids, and chat messages → prompt segments.

Pieces are runs of at most six non-space characters, each carrying the whitespace before it
(`" hello"`, `" intern"`, `"ationa"`, …), which gives about 1.3 tokens per English word, close to
a real BPE tokenizer. A piece's id is the CRC-32 of its UTF-8 bytes: the same text gets the same ids
in every process and on every machine (Python's `hash()` is salted per process, so it is not used).
Two texts share a token prefix exactly as far as they share a prefix of pieces, which is what the
prefix cache needs.

A chat prompt is tokenized message by message (each rendered message is a segment), and the ids of a
segment are memoized: a 2,000-token system prompt shared by many requests is tokenized once, not
once per request.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Mapping

PIECE = re.compile(r"\s*\S{1,6}|\s+")
# Words the simulator "generates": each is at most six characters, so " word" is exactly one token.
WORDS = (
    "the", "model", "says", "hello", "from", "a", "simple", "engine", "that", "counts", "tokens",
    "and", "waits", "its", "turn", "in", "queue", "while", "cache", "keeps", "prefix", "warm",
    "for", "next", "prompt", "so", "first", "token", "comes", "sooner", "than", "cold",
)  # fmt: skip
CHAT_ROLE_START = "<|im_start|>"
CHAT_ROLE_END = "<|im_end|>"
PIECE_CACHE_LIMIT = 65536
SEGMENT_CACHE_LIMIT = 1024


class Tokenizer:
    """Encodes text into stable token ids; keeps bounded memos of pieces and segments it has seen."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._segments: dict[str, list[int]] = {}

    def encode(self, text: str) -> list[int]:
        ids = self._ids
        if len(ids) > PIECE_CACHE_LIMIT:
            ids.clear()
        out = []
        for piece in PIECE.findall(text):
            token = ids.get(piece)
            if token is None:
                token = ids[piece] = zlib.crc32(piece.encode())
            out.append(token)
        return out

    def encode_segments(self, segments: Iterable[str]) -> list[int]:
        """The ids of each segment, one after another (each segment tokenized on its own, memoized)."""
        out: list[int] = []
        memo = self._segments
        for segment in segments:
            ids = memo.get(segment)
            if ids is None:
                if len(memo) >= SEGMENT_CACHE_LIMIT:
                    del memo[next(iter(memo))]  # the oldest entry
                ids = memo[segment] = self.encode(segment)
            out += ids
        return out

    def count(self, text: str) -> int:
        return len(PIECE.findall(text))


def chat_segments(messages: Iterable[Mapping[str, object]]) -> tuple[str, ...]:
    """The prompt a chat request becomes (ChatML layout), one segment per message, ending with the
    assistant's header where its answer starts.

    The last segment followed by the answer text is exactly how the next turn renders that answer,
    so a multi-turn conversation finds its earlier turns in the prefix cache.
    """
    parts = [
        f"{CHAT_ROLE_START}{m.get('role', 'user')}\n{message_text(m.get('content'))}{CHAT_ROLE_END}\n" for m in messages
    ]
    parts.append(f"{CHAT_ROLE_START}assistant\n")
    return tuple(parts)


def render_chat(messages: Iterable[Mapping[str, object]]) -> str:
    """The chat prompt as one text."""
    return "".join(chat_segments(messages))


def message_text(content: object) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def generated_pieces(start: int, count: int, *, leading_space: bool) -> list[str]:
    """`count` canned words from word `start` of the list, one string per token, space-separated.

    A chat answer starts without a space; a completion continues its prompt, so it starts with one.
    """
    return [(" " if i or leading_space else "") + WORDS[(start + i) % len(WORDS)] for i in range(count)]

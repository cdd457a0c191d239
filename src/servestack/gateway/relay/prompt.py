"""How big a generation request is, read off its parsed body without a tokenizer.

Two uses, with opposite needs. The context check wants a *lower* bound on the prompt's tokens, to
refuse only prompts that cannot fit (`check_context`): no token of a common vocabulary is longer
than `MAX_CHARS_PER_TOKEN` characters (SmolLM2's longest is 81), so a prompt of N characters has at
least N / 256 tokens, and token ids count one each; exact counting is the engine's business. The
first-byte deadline (deadline.py) wants a generous size: it counts every character.

Only the text the engine will read is counted: chat messages' text (and text parts), a completion
prompt (a string, a batch of strings, or token ids), SGLang's `text` or `input_ids`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from servestack.errors import ContextLengthExceeded

MAX_CHARS_PER_TOKEN = 256
# Routes whose body is a prompt to generate from (after Ollama's translation: its exchanges keep /api/*).
GENERATION_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/api/chat", "/api/generate", "/generate"})
MAX_TOKENS_FIELDS = ("max_tokens", "max_completion_tokens")


@dataclass(frozen=True, slots=True)
class PromptSize:
    chars: int = 0  # characters of prompt text
    token_ids: int = 0  # tokens given as ids

    @property
    def min_tokens(self) -> int:
        """Fewer tokens than this the prompt cannot have, whatever the tokenizer."""
        return self.token_ids + -(-self.chars // MAX_CHARS_PER_TOKEN)


def measure_prompt(payload: Mapping[str, Any]) -> PromptSize:
    messages = payload.get("messages")
    if isinstance(messages, list):
        return PromptSize(chars=sum(_message_chars(m) for m in messages if isinstance(m, dict)))
    for field in ("prompt", "text", "input_ids"):
        if field in payload:
            return _size(payload[field])
    return PromptSize()


def prompt_param(payload: Mapping[str, Any]) -> str:
    """The body field that holds the prompt (OpenAI's `param` of a context error)."""
    return next((f for f in ("messages", "prompt", "text", "input_ids") if f in payload), "messages")


def check_context(payload: Mapping[str, Any], size: PromptSize, context_length: int) -> None:
    """Raise ContextLengthExceeded when the prompt cannot fit in `context_length` tokens."""
    tokens = size.min_tokens
    if tokens <= context_length:
        return
    what = f"{size.chars:,} characters" if size.chars else f"{size.token_ids:,} token ids"
    raise ContextLengthExceeded(
        f"This model's maximum context length is {context_length:,} tokens, and the prompt has at least "
        f"{tokens:,} ({what}). Shorten the prompt.",
        param=prompt_param(payload),
    )


def requested_tokens(payload: Mapping[str, Any]) -> int | None:
    """The most tokens the request asks to generate (`max_tokens`, SGLang's `max_new_tokens`); None: not said."""
    for field in MAX_TOKENS_FIELDS:
        value = payload.get(field)
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return int(min(value, 2**31))
    params = payload.get("sampling_params")
    if isinstance(params, dict):
        value = params.get("max_new_tokens")
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return min(value, 2**31)
    return None


def _message_chars(message: Mapping[str, Any]) -> int:
    content = message.get("content")
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(p["text"]) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return 0


def _size(prompt: object) -> PromptSize:
    if isinstance(prompt, str):
        return PromptSize(chars=len(prompt))
    if not isinstance(prompt, list) or not prompt:
        return PromptSize()
    if all(isinstance(p, str) for p in prompt):  # a batch: each prompt must fit on its own
        return PromptSize(chars=max(len(p) for p in prompt))
    if isinstance(prompt[0], list):  # a batch of token-id lists
        return PromptSize(token_ids=max(len(p) for p in prompt if isinstance(p, list)))
    return PromptSize(token_ids=len(prompt))

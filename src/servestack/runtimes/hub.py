"""The Hugging Face token engines need for gated models: from the environment or the stack's `.env`.

Both names are set when either is given: `HF_TOKEN` is what current libraries read,
`HUGGING_FACE_HUB_TOKEN` what older ones (and seed 002's image) read.
"""

from __future__ import annotations

from collections.abc import Mapping

TOKEN_NAMES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def hub_token_env(*sources: Mapping[str, str]) -> dict[str, str]:
    """`{HF_TOKEN, HUGGING_FACE_HUB_TOKEN}` from the first source holding either (earlier sources win)."""
    for source in sources:
        token = next((source[name] for name in TOKEN_NAMES if source.get(name)), None)
        if token:
            return dict.fromkeys(TOKEN_NAMES, token)
    return {}

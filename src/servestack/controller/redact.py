"""Masking secrets in text bound for a page: engine log lines, errors, log tails.

The instance knows its secrets: each engine's `api_key`, secret-looking variables of its environment
and of the services' `env` (HF_TOKEN, …), the admin key. Their values are masked wherever they appear
(an engine may print its own arguments), and so is anything shaped like a Hugging Face token or a
servestack key secret, whoever's it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from servestack.runtimes import is_secret
from servestack.runtimes.base import MASK

SHAPES = re.compile(r"\b(?:hf_[A-Za-z0-9]{20,}|sk-ss-[A-Za-z0-9_-]{20,})")
MIN_SECRET = 6  # shorter values are too likely to be ordinary words or numbers to mask everywhere


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        found = {s for s in secrets if len(s) >= MIN_SECRET}
        self.pattern = (
            re.compile("|".join(re.escape(s) for s in sorted(found, key=len, reverse=True))) if found else None
        )

    @classmethod
    def of(cls, values: Iterable[str | None], *environments: Mapping[str, str]) -> Redactor:
        """The given secret values, plus the values of secret-looking names in each environment."""
        named = (value for env in environments for name, value in env.items() if is_secret(name))
        return cls([v for v in values if v] + list(named))

    def __call__(self, text: str) -> str:
        if self.pattern is not None:
            text = self.pattern.sub(MASK, text)
        return SHAPES.sub(MASK, text)

    def lines(self, lines: Iterable[str]) -> list[str]:
        return [self(line) for line in lines]

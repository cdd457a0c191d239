"""A service's `defaults:`: sampling settings the gateway gives a request that leaves them out.

Seed 003 keeps `inference: {temperature: 0.7, top_p: 0.9, max_tokens: 2048}` in its engine config;
servestack applies such defaults at the gateway, the same whatever engine serves the model, and only
to a field the request omits (or sends as null): a client's own value always wins. The names are the
OpenAI request's (`max_tokens`; Ollama's `num_predict` reaches the gateway as `max_tokens`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class RequestDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0, description="0: off (the engines take top_k as an extension).")
    min_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, description="Also what `max_completion_tokens` defaults to.")
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = None
    stop: list[str] | None = Field(default=None, description="A string or a list of up to 4 strings.")

    @field_validator("stop", mode="before")
    @classmethod
    def _one_or_several(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("stop")
    @classmethod
    def _at_most_four(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not 1 <= len(value) <= 4:
            raise ValueError("stop holds 1 to 4 strings (the OpenAI API's limit)")
        return value

    def as_request(self) -> dict[str, Any]:
        """The defaults that are set, as request fields."""
        return self.model_dump(exclude_none=True)

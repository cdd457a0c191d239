"""The base of every stack-file model: an unknown key is an error (a typo names it); nothing changes once loaded."""

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

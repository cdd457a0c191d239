"""The built-in catalog: config.json fields of common models shipped in the package (`catalog.json`).

It lets `servestack plan` work offline for a model that is not on disk. Lookups accept the HF id in
any case, or the bare repository name when only one entry has it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from servestack.modelinfo.config import facts_from_config
from servestack.modelinfo.facts import ModelFacts

CATALOG_RESOURCE = "catalog.json"


@dataclass(frozen=True)
class Catalog:
    """HF id → config.json dict."""

    configs: Mapping[str, Mapping[str, Any]]

    @classmethod
    def builtin(cls) -> Catalog:
        text = resources.files("servestack.modelinfo").joinpath(CATALOG_RESOURCE).read_text()
        return cls(json.loads(text)["models"])

    def __iter__(self) -> Iterator[str]:
        return iter(self.configs)

    def __len__(self) -> int:
        return len(self.configs)

    def resolve(self, model: str) -> str | None:
        """The catalog's HF id for `model` (exact, case-insensitive, or a unique bare repo name)."""
        if model in self.configs:
            return model
        wanted = model.strip().lower()
        by_lower = {key.lower(): key for key in self.configs}
        if wanted in by_lower:
            return by_lower[wanted]
        by_name = [key for key in self.configs if key.lower().rsplit("/", 1)[-1] == wanted]
        return by_name[0] if len(by_name) == 1 else None

    def facts(self, model: str) -> ModelFacts | None:
        """Facts for `model` from the catalog, or None when it is not in it."""
        key = self.resolve(model)
        if key is None:
            return None
        return facts_from_config(self.configs[key], model_id=key, source="built-in catalog")

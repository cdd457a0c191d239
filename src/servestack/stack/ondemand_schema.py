"""The stack keys of on-demand loading: durations as users write them, and the gateway's loading section.

Per service (in `schema.py`): `load: always | on-demand`, `keep_alive`, `priority`, `unload: stop | sleep`.
Global (on `gateway:`, see `schema.py`): `load_timeout` (how long a request may wait for its model to load),
`load_max_waiting` (requests waiting per service), `swap_hold` (the fairness hold of two services that cannot
be loaded together and both have traffic) and `load_keepalive` (docs/on-demand.md).

A duration is seconds (`90`, `2.5`), or a number with a unit (`30s`, `5m`, `1h`); `keep_alive` also
takes `0` (unload right after the last request) and `forever` (never unload when idle), as Ollama's
`keep_alive` does (a negative number means forever there too).
"""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator, Field

FOREVER = math.inf
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
DURATION_HELP = "a duration such as 30, 30s, 5m or 1h"


def parse_duration(value: object, *, forever: bool = False) -> float:
    """Seconds from `90`, `30s`, `5m`, `1h` (and `forever` or a negative number when `forever` is allowed)."""
    if isinstance(value, bool):
        raise ValueError(f"expected {DURATION_HELP}")
    if isinstance(value, int | float):
        if value < 0 and forever:
            return FOREVER
        if value < 0 or math.isnan(value):
            raise ValueError(f"expected {DURATION_HELP}, not a negative number")
        return float(value)
    if isinstance(value, str):
        if forever and value.strip().lower() in ("forever", "-1", "inf"):
            return FOREVER
        match = _DURATION.match(value)
        if match is not None:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    more = ", 0 or forever" if forever else ""
    raise ValueError(f"expected {DURATION_HELP}{more}")


def format_duration(seconds: float) -> str:
    """`5m`, `30s`, `1h30m`, `forever` (for plan output and docs)."""
    if seconds == FOREVER:
        return "forever"
    if seconds < 60 or seconds % 60:
        return f"{seconds:g}s"
    minutes = int(seconds // 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours and minutes else f"{hours}h" if hours else f"{minutes}m"


def _keep_alive(value: object) -> float:
    return parse_duration(value, forever=True)


KeepAlive = Annotated[float, BeforeValidator(_keep_alive)]
Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]

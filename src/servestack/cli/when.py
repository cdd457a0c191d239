"""Times on the command line: `30d`, `12h`, `15m` (relative to now), or an ISO date or date-time."""

from __future__ import annotations

import re
from datetime import datetime

from servestack.errors import ServestackError

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_when(text: str, now: float, *, future: bool) -> float:
    """Unix time for `text`: a duration counts forward from `now` when `future`, else back."""
    match = _RELATIVE.match(text)
    if match:
        seconds = float(match.group(1)) * _SECONDS[match.group(2)]
        return now + seconds if future else now - seconds
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ServestackError(
            f"cannot read the time {text!r}", fix="write a duration (30d, 12h, 15m) or a date (2026-12-31[T18:00])"
        ) from None
    return moment.timestamp()  # a time without a zone is local time


def format_time(seconds: float | None) -> str:
    return "-" if seconds is None else datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M")

"""Reading a few gauges out of an engine's Prometheus text, without a full parser.

Only the samples named in the endpoint's `metric_names` are read; their values are summed over
label sets (one engine process can report several), except usage fractions, which take the max.
"""

from __future__ import annotations

from collections.abc import Mapping

FRACTIONS = frozenset({"kv_usage"})


def read_gauges(text: str, metric_names: Mapping[str, str], wanted: tuple[str, ...]) -> dict[str, float]:
    """Common name → value, for the `wanted` common names that `metric_names` maps and `text` holds."""
    by_engine_name = {metric_names[name]: name for name in wanted if name in metric_names}
    values: dict[str, float] = {}
    if not by_engine_name:
        return values
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        brace = line.find("{")
        space = line.find(" ")
        end = brace if 0 <= brace < space or (brace >= 0 > space) else space
        name = by_engine_name.get(line[:end])
        if name is None:
            continue
        rest = line[line.rfind("}") + 1 :] if brace == end else line[end:]
        try:
            value = float(rest.split()[0])
        except (IndexError, ValueError):
            continue
        if name in FRACTIONS:
            values[name] = max(values.get(name, 0.0), value)
        else:
            values[name] = values.get(name, 0.0) + value
    return values

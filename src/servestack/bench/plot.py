"""`--plot out.png`: latency against load, one line per percentile (needs matplotlib: `servestack[bench]`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from servestack.bench.report import LATENCIES
from servestack.bench.stats import Distribution, Summary
from servestack.errors import BenchError


def plot_latency(summaries: Sequence[Summary], path: Path, *, title: str) -> None:
    """Write a PNG with one panel per latency metric measured; x is the achieved request rate."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BenchError(
            "--plot needs matplotlib", fix="pip install 'servestack[bench]'  (or: pip install matplotlib)"
        ) from None
    metrics = [(name, attr) for name, attr in LATENCIES if any(getattr(s, attr) for s in summaries)]
    if not metrics:
        raise BenchError("nothing to plot: no request succeeded")
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.8), squeeze=False)
    for ax, (name, attr) in zip(axes[0], metrics, strict=True):
        points = [(s.request_rate, d, s.label) for s in summaries if (d := getattr(s, attr)) is not None]
        xs = [p[0] for p in points]
        for pct in ("p50", "p90", "p99"):
            ax.plot(xs, [1000 * getattr(p[1], pct) for p in points], marker="o", label=pct)
        _label_points(ax, points)
        ax.set_title(name)
        ax.set_xlabel("requests/s achieved")
        ax.set_ylabel("ms")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _label_points(ax: object, points: list[tuple[float, Distribution, str]]) -> None:
    for x, dist, label in points:
        ax.annotate(label.split()[-1], (x, 1000 * dist.p50), fontsize=7, alpha=0.7)  # type: ignore[attr-defined]

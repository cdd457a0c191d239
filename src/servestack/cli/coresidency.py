"""`plan`'s co-residency section: which on-demand services can be loaded together, and which exclude
each other, with the GPU and the figures that decide it (plan/residency.py)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from servestack.cli.app import styled
from servestack.plan import Plan
from servestack.stack import format_duration


def print_residency(out: Console, plan: Plan) -> None:
    residency = plan.residency
    if residency is None or not residency.on_demand:
        return
    out.print()
    out.print("on-demand services", style="bold")
    settings = Table(box=None, header_style="dim", pad_edge=False)
    for column in ("SERVICE", "GPU SHARES", "KEEP ALIVE", "PRIORITY", "UNLOAD"):
        settings.add_column(column)
    for name in residency.on_demand:
        service = plan.stack.services[name]
        shares = residency.shares[name]
        settings.add_row(
            name,
            ", ".join(f"GPU {g} {share:.2f}" for g, share in shares.items()) or "none (no GPU claim)",
            format_duration(service.keep_alive),
            str(service.priority),
            service.unload,
        )
    out.print(settings)
    groups = residency.groups()
    if groups:
        out.print(styled(("loaded together: ", "dim"), "  |  ".join(" + ".join(group) for group in groups)))
    exclusions = residency.exclusions()
    if not exclusions:
        out.print(styled(("exclude each other: ", "dim"), "none (all of them fit at once)"))
        return
    out.print("exclude each other:", style="dim")
    for conflict in exclusions:
        out.print(f"  {' ✗ '.join(conflict.services)}  {conflict.describe()}", soft_wrap=True)

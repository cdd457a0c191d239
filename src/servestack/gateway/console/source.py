"""The console's seam: what the running instance tells the console, and what it does for it.

The controller implements `ConsoleSource` (controller/console_source.py) from the records `status`,
`plan`, `logs` and the control socket read and steer, so the console shows nothing they would not;
the gateway never imports the controller, the supervisor or the planner. Whatever a source hands
over is fit for a page: secrets (HF tokens, engine `api_key`s, the admin key) are masked by the
source, which alone knows them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

ACTIONS = ("start", "stop", "restart", "load", "unload")  # the control socket's verbs, in the same words


@dataclass(frozen=True, slots=True)
class LogLine:
    replica: str  # the replica's label, as `logs` prefixes it: `chat`, `chat#1`
    text: str


class ConsoleSource(Protocol):
    """The running instance, as the console reads and steers it."""

    def service_names(self) -> list[str]:
        """Every service of the running stack, in the stack's order."""
        ...

    async def overview(self) -> dict[str, Any]:
        """Every service and replica (`status --json`'s records, with load states and on-demand use) and each
        GPU's memory: the plan's weights, KV cache and overhead per service, beside NVML's used memory."""
        ...

    def plan(self) -> dict[str, Any]:
        """The running plan as `plan --json` prints it."""
        ...

    def explore_tp(self, service: str) -> dict[str, Any]:
        """`plan --explore-tp SERVICE --json` for the running plan's GPUs; PlanError/StateError when it cannot be."""
        ...

    def log_lines(self, service: str, replica: int | None, lines: int) -> AsyncIterator[list[LogLine]]:
        """The last `lines` lines of each replica's engine log (or one replica's), then new lines in batches as
        they are written (an empty batch after a quiet spell), until the instance stops. StateError at once for
        a service or replica without a log."""
        ...

    async def act(self, service: str, action: str) -> dict[str, Any]:
        """Do one of ACTIONS to `service` as the control socket does; `{"ok": true}`, or the failure as the
        control socket answers it (`error`, `fix`, `log_tail`, `kind`). Returns once the action is done."""
        ...

"""Rendering what the controller reports while `up` starts engines and serves."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.status import Status

from servestack.cli.app import styled
from servestack.errors import EngineError
from servestack.supervisor.state import EventKind, ReplicaEvent

if TYPE_CHECKING:
    from servestack.supervisor import Replica


class RichReporter:
    """A spinner while engines load, one line per event, the endpoint at the end."""

    def __init__(self, console: Console, *, announce: bool = True) -> None:
        self.console = console
        self.announce = announce  # False: no gateway / "is up" lines (a throwaway instance)
        self._loading: dict[str, float] = {}
        self._status: Status | None = None
        self._started = time.monotonic()

    def gateway_started(self, url: str, streams: int) -> None:
        if not self.announce:
            return
        self.console.print(
            f"gateway listening on {url} (answers 503 until an engine is ready; room for {streams:,} streams at once)",
            style="dim",
        )

    def replica_starting(self, replica: Replica) -> None:
        self.console.print(
            styled(
                ("▸", "cyan"),
                " starting ",
                (replica.state.label, "bold"),
                f" with {replica.engine.display_name} on port {replica.config.port} — log: {replica.state.log_path}",
            )
        )
        self._loading[replica.state.key] = 0.0
        if self._status is None:
            self._status = self.console.status("loading…")
            self._status.start()

    def replica_loading(self, replica: Replica, elapsed: float) -> None:
        self._loading[replica.state.key] = elapsed
        if self._status is not None:
            names = ", ".join(f"{key.split('.')[0]} {seconds:.0f}s" for key, seconds in self._loading.items())
            self._status.update(styled(f"loading: {names}"))

    def replica_ready(self, replica: Replica, seconds: float) -> None:
        self._done(replica)
        self.console.print(
            styled(
                ("✓", "green"),
                " ",
                (replica.state.label, "bold"),
                f" ready in {seconds:.1f}s ({replica.base_url}, pid {replica.state.pid})",
            )
        )

    def replica_failed(self, replica: Replica, error: EngineError) -> None:
        self._done(replica)
        self.console.print(styled(("✗", "red"), " ", (replica.state.label, "bold"), " failed to start"))

    def replica_event(self, replica: Replica, event: ReplicaEvent) -> None:
        """What the supervisor did on its own: an exit, a restart that failed, a replica back after a restart.

        Starts that `up` or a user asked for are printed by `replica_starting`/`replica_ready`/`replica_failed`.
        """
        automatic = event.restart > 0 and event.kind in (EventKind.READY, EventKind.START_FAILED)
        if event.kind not in (EventKind.EXITED, EventKind.LOST) and not automatic:
            return
        mark = ("✓", "green") if event.kind is EventKind.READY else ("✗", "red")
        self.console.print(styled(mark, " ", (replica.state.label, "bold"), " ", event.message))
        if event.signal is None and event.exit_code != 0:  # its own last words explain a crash; a kill's do not
            for line in event.log_tail:
                self.console.print(styled("  ", ("│", "dim"), " ", line))

    def all_ready(self, url: str, models: list[str]) -> None:
        self._stop_status()
        if not self.announce:
            return
        total = time.monotonic() - self._started
        self.console.print(
            styled(("servestack is up", "bold green"), f" in {total:.1f}s: {url}/v1  (models: {', '.join(models)})")
        )
        self.console.print(
            "Ctrl-C stops everything; `servestack status` and `servestack logs SERVICE` from another shell.",
            style="dim",
        )

    def stopping(self) -> None:
        self._stop_status()
        if not self.announce:
            return
        self.console.print("stopping engines…", style="dim")

    def _done(self, replica: Replica) -> None:
        self._loading.pop(replica.state.key, None)
        if not self._loading:
            self._stop_status()

    def _stop_status(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

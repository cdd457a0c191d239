"""When to bring a dead engine back: restart policy, exponential backoff, crash-loop detection.

Pure bookkeeping: the supervisor reports failures and asks how long to wait (or whether to give up).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from servestack.stack import RestartPolicy


@dataclass(frozen=True)
class Backoff:
    base: float = 1.0
    cap: float = 60.0
    crash_limit: int = 5  # failures within `crash_window` seconds that count as a crash loop
    crash_window: float = 600.0


@dataclass
class RestartTracker:
    policy: RestartPolicy
    backoff: Backoff = field(default_factory=Backoff)
    clock: Callable[[], float] = time.monotonic
    failures: deque[float] = field(default_factory=deque)
    gave_up: str | None = None

    def on_exit(self, exit_code: int | None) -> float | None:
        """Record an unexpected exit; return seconds to wait before restarting, or None to stay down."""
        if self.policy == "never" or (self.policy == "on-failure" and exit_code == 0):
            return None
        now = self.clock()
        self.failures.append(now)
        while self.failures and now - self.failures[0] > self.backoff.crash_window:
            self.failures.popleft()
        if len(self.failures) >= self.backoff.crash_limit:
            minutes = self.backoff.crash_window / 60
            self.gave_up = f"crash loop: {len(self.failures)} failures within {minutes:g} min, not restarting"
            return None
        return min(self.backoff.base * 2 ** (len(self.failures) - 1), self.backoff.cap)

    def on_ready(self) -> None:
        """A successful start does not erase history (that is what the window is for)."""

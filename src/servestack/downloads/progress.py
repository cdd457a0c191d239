"""How a pull reports its progress: a small listener the CLI renders (with rich) and tests record.

Hubs call the listener from the thread that downloads; the CLI's implementation must be thread-safe
(rich's `Progress` is).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from servestack.downloads.remote import RemoteFile


class ProgressListener(Protocol):
    def start(self, label: str, files: Sequence[RemoteFile], total_bytes: int) -> None:
        """A download of `files` (`total_bytes` in all) begins."""

    def file_started(self, path: str, size: int | None) -> None:
        """Bytes of `path` start to arrive."""

    def advance(self, path: str, n: int) -> None:
        """`n` more bytes of `path` arrived (negative when a restarted transfer discards bytes)."""

    def file_done(self, path: str) -> None:
        """`path` is complete and in place."""

    def finish(self) -> None:
        """The download is over (complete or failed)."""


class SilentProgress:
    """A listener that shows nothing."""

    def start(self, label: str, files: Sequence[RemoteFile], total_bytes: int) -> None:
        pass

    def file_started(self, path: str, size: int | None) -> None:
        pass

    def advance(self, path: str, n: int) -> None:
        pass

    def file_done(self, path: str) -> None:
        pass

    def finish(self) -> None:
        pass

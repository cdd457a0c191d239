"""The process's open-files limit: raised as far as it may go, and what to say when it runs out.

Every relayed stream holds two descriptors (the client's connection and the engine's), so the soft
`RLIMIT_NOFILE` bounds how many streams the gateway can hold; a login shell's usual 1,024 allows
about 450. The gateway raises its soft limit to the hard one when it starts, and holds at most the
client connections that leave each room for its engine connection (`OpenFilesLimit.streams`, after
the descriptors open at start and a reserve for the rest: probes, logs, engines it spawns). Past
that, and whenever a descriptor cannot be had anyway (EMFILE: this process; ENFILE: the whole
system), it is the gateway's own shortage, not an engine's failure: a 503 naming the limit and the
fix, logged (`ShortageLog`: at most one line per interval, with the count) rather than per request.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeGuard

from servestack.errors import OpenFilesExhausted

SHORTAGE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE})
DESCRIPTORS_PER_STREAM = 2
RESERVED = 64  # descriptors kept for what is not a stream: probes, scrapes, logs, databases, engines spawned
NR_OPEN = "/proc/sys/fs/nr_open"  # the most RLIMIT_NOFILE may be set to when the hard limit is unlimited
LOG_EVERY_SECONDS = 10.0


@dataclass(frozen=True)
class OpenFilesLimit:
    soft: int  # the limit in force
    hard: int  # the most an unprivileged process may raise it to
    in_use: int  # descriptors open when it was read

    @property
    def streams(self) -> int:
        """How many relayed streams fit in what is left."""
        return max(0, self.soft - self.in_use - RESERVED) // DESCRIPTORS_PER_STREAM


def raise_open_files_limit() -> OpenFilesLimit:
    """Raise the soft open-files limit to the hard one (when it is lower); the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = _ceiling(hard)
    if soft == resource.RLIM_INFINITY or soft < ceiling:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
            soft = ceiling
        except (OSError, ValueError):
            pass  # a container may forbid it: the limit stays as it was, and the capacity says so
    return OpenFilesLimit(soft=soft, hard=_finite(hard), in_use=_descriptors_in_use())


def exhausted(exc: BaseException | None) -> TypeGuard[OSError]:
    """Whether `exc` says the process (or the system) has no descriptor left."""
    return isinstance(exc, OSError) and exc.errno in SHORTAGE_ERRNOS


def shortage(exc: OSError | None = None) -> OpenFilesExhausted:
    """The 503 for a request the gateway cannot serve for want of a descriptor (`exc`, when it failed to get
    one): the limit, and what to do."""
    if exc is not None and exc.errno == errno.ENFILE:
        return OpenFilesExhausted(
            "The gateway cannot open a connection: the system's open-files table is full (fs.file-max); "
            "raise it (sysctl fs.file-max) or stop what holds the files",
            retry_after=1,
        )
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    raise_it = "raise the hard limit (ulimit -Hn, LimitNOFILE= in a systemd unit, --ulimit nofile= for docker)"
    if soft < _ceiling(hard):
        raise_it = "restart it with a higher limit (ulimit -n)"
    return OpenFilesExhausted(
        f"The gateway is out of file descriptors: its open-files limit is {soft:,}, two for each stream; "
        f"{raise_it}, or send fewer requests at once",
        retry_after=1,
    )


class ShortageLog:
    """Logs the gateway's descriptor shortages: one line per `every` seconds at most, with the count so far."""

    def __init__(
        self,
        log: logging.Logger,
        what: str,
        *,
        every: float = LOG_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._what = what  # what each shortage did: "connections refused with 503", ...
        self._every = every
        self._clock = clock
        self._next = 0.0
        self.count = 0

    def note(self, error: OpenFilesExhausted) -> None:
        self.count += 1
        now = self._clock()
        if now >= self._next:
            self._log.warning("%s (%d %s so far)", error.message, self.count, self._what)
            self._next = now + self._every


def _ceiling(hard: int) -> int:
    if hard != resource.RLIM_INFINITY:
        return hard
    try:
        with open(NR_OPEN) as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20  # Linux's default nr_open


def _finite(limit: int) -> int:
    return _ceiling(limit) if limit == resource.RLIM_INFINITY else limit


def _descriptors_in_use() -> int:
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # less the one listing them
    except OSError:
        return 0

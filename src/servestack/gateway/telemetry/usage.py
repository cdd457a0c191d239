"""The usage ledger: one row per request, committed in batches off the request path.

A finished request appends a tuple to an in-memory list (no I/O). A background task wakes on the
first row, waits up to `flush_interval` for more, and commits the batch in one transaction from a
worker thread. So a row is durable at most `flush_interval` (plus one commit) after its request
finished; committed rows survive a kill -9 of the gateway (SQLite WAL). `totals()` is what
`servestack usage` prints.

The table has no index besides its rowid (an index on `ts` more than doubled the cost of each
insert): rows arrive in time order, so "since T" is a binary search over rowids.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from servestack.gateway.admission.sqlite import open_database

log = logging.getLogger("servestack.gateway")

MIGRATIONS = [
    """
    CREATE TABLE requests (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        request_id TEXT NOT NULL,
        key_id TEXT,
        key_name TEXT,
        model TEXT NOT NULL,
        alias TEXT,
        replica TEXT,
        route TEXT NOT NULL,
        stream INTEGER NOT NULL,
        status INTEGER NOT NULL,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        estimated INTEGER NOT NULL DEFAULT 0,
        ttft REAL,
        duration REAL
    )
    """,
]

INSERT = (
    "INSERT INTO requests (ts, request_id, key_id, key_name, model, alias, replica, route, stream, status,"
    " prompt_tokens, completion_tokens, estimated, ttft, duration) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

Row = tuple[object, ...]
GroupBy = Literal["key", "model"]


@dataclass(frozen=True)
class Totals:
    group: str
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    estimated: int  # requests whose token counts are estimates
    mean_ttft: float | None
    mean_duration: float | None


class UsageLedger:
    def __init__(self, path: Path, *, flush_interval: float = 0.2, readonly: bool = False) -> None:
        self.path = path
        self.flush_interval = flush_interval
        self.db = open_database(path, MIGRATIONS, readonly=readonly)
        self._rows: list[Row] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._writing: asyncio.Future[None] | None = None
        self.batches = 0  # commits so far (to see batching at work)

    def append(self, row: Row) -> None:
        """Queue one request's row (in INSERT's column order); cheap, no I/O."""
        self._rows.append(row)
        if not self._wake.is_set():
            self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._write_forever())

    async def stop(self) -> None:
        """Write what is queued, then close."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._writing is not None:  # a batch still being committed by its thread
            with contextlib.suppress(Exception):
                await self._writing
        await asyncio.to_thread(self._write, self._take())
        self.db.close()

    async def _write_forever(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.flush_interval)
            self._wake.clear()
            rows = self._take()
            self._writing = asyncio.ensure_future(asyncio.to_thread(self._write, rows))
            try:
                await asyncio.shield(self._writing)
            except sqlite3.Error as exc:  # keep serving; the rows go back for the next try
                log.warning("could not write %d usage rows: %s", len(rows), exc)
                self._rows[:0] = rows
                self._wake.set()

    def _take(self) -> list[Row]:
        rows, self._rows = self._rows, []
        return rows

    def _write(self, rows: list[Row]) -> None:
        if not rows:
            return
        with self.db:  # one transaction per batch: commit, or roll back on error
            self.db.execute("BEGIN")
            self.db.executemany(INSERT, rows)
        self.batches += 1

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM requests").fetchone()[0])

    def totals(self, by: GroupBy = "key", since: float | None = None) -> list[Totals]:
        column = "COALESCE(key_name, '(no key)')" if by == "key" else "model"
        query = (
            f"SELECT {column}, COUNT(*), SUM(status >= 400), COALESCE(SUM(prompt_tokens), 0),"
            " COALESCE(SUM(completion_tokens), 0), SUM(estimated), AVG(ttft), AVG(duration)"
            f" FROM requests WHERE id >= ? AND ts >= ? GROUP BY {column} ORDER BY {column}"
        )
        rows = self.db.execute(query, (self._first_id(since), since or 0.0)).fetchall()
        return [Totals(str(r[0]), r[1], r[2] or 0, r[3], r[4], r[5] or 0, r[6], r[7]) for r in rows]

    def rows(self, since: float | None = None, limit: int = 1000) -> list[dict[str, object]]:
        cursor = self.db.execute(
            "SELECT * FROM requests WHERE id >= ? AND ts >= ? ORDER BY id DESC LIMIT ?",
            (self._first_id(since), since or 0.0, limit),
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def _first_id(self, since: float | None) -> int:
        """The first rowid with `ts >= since`: a binary search, as rows are appended in time order."""
        if since is None:
            return 0
        low, high = self.db.execute("SELECT MIN(id), MAX(id) FROM requests").fetchone()
        if low is None:
            return 0
        high += 1
        while low < high:
            middle = (low + high) // 2
            found = self.db.execute("SELECT ts FROM requests WHERE id >= ? ORDER BY id LIMIT 1", (middle,)).fetchone()
            if found is None or found[0] >= since:
                high = middle
            else:
                low = middle + 1
        return int(low)

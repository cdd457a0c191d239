"""Opening the gateway's SQLite files (keys, usage) with WAL and numbered schema migrations.

WAL lets the CLI read and write while the gateway runs, and a committed transaction survives a
crash of the process (`synchronous=NORMAL` can only lose the last commits on a power cut). Each
database's schema version lives in `PRAGMA user_version`; migration N brings it from N to N+1.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from servestack.errors import StateError

BUSY_TIMEOUT_MS = 5000


def open_database(path: Path, migrations: Sequence[str], *, readonly: bool = False) -> sqlite3.Connection:
    """Connect to `path` (created unless `readonly`), migrated to the newest schema.

    The connection may be used from another thread, one thread at a time (the caller serialises).
    """
    if readonly and not path.is_file():
        raise StateError(f"{path} does not exist yet")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if readonly:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None)
        else:
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            path.chmod(0o600)
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not readonly:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            migrate(db, migrations, path)
    except sqlite3.Error as exc:
        raise StateError(f"{path}: {exc}") from None
    return db


def migrate(db: sqlite3.Connection, migrations: Sequence[str], path: Path) -> None:
    """Apply the migrations `path` has not seen yet, each in its own transaction."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(migrations):
        raise StateError(
            f"{path} was written by a newer servestack (schema {version}, this one knows {len(migrations)})",
            fix="upgrade servestack, or point SERVESTACK_HOME elsewhere",
        )
    for number in range(version, len(migrations)):
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(migrations[number]):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number + 1}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT first; running statements one by one keeps a migration atomic.
    return [s.strip() for s in script.split(";") if s.strip()]

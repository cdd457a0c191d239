"""API keys: the record, the secret, and the SQLite store under the state dir.

A secret is `sk-ss-` plus 256 random bits, shown once by `servestack keys create`. Only its SHA-256
is stored (a salt adds nothing for a random 256-bit secret), plus its last four characters so a
person can tell keys apart. The running gateway never queries this store per request: `KeyRing`
(auth.py) loads the active keys into memory and reloads them when the database changes.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from servestack.errors import StateError
from servestack.gateway.admission.sqlite import open_database

SECRET_PREFIX = "sk-ss-"
ID_PREFIX = "key_"

MIGRATIONS = [
    """
    CREATE TABLE keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        secret_hash TEXT NOT NULL UNIQUE,
        hint TEXT NOT NULL,
        models TEXT,
        rpm INTEGER,
        tpm INTEGER,
        max_concurrent INTEGER,
        expires_at REAL,
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE UNIQUE INDEX keys_active_name ON keys (name) WHERE revoked_at IS NULL
    """,
]

_COLUMNS = "id, name, hint, models, rpm, tpm, max_concurrent, expires_at, created_at, revoked_at"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """What the gateway knows of a key: never its secret."""

    id: str
    name: str
    hint: str = ""
    models: frozenset[str] | None = None  # None: every model
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None
    expires_at: float | None = None
    created_at: float = 0.0
    revoked_at: float | None = None
    admin: bool = False

    def allows(self, model: str) -> bool:
        return self.models is None or model in self.models

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def status(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expired(now) else "active"

    def describe(self, now: float) -> dict[str, Any]:
        """The key as `keys list --json` and `/admin/keys` show it."""
        return {
            "id": self.id,
            "name": self.name,
            "hint": f"sk-ss-…{self.hint}",
            "models": sorted(self.models) if self.models is not None else None,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "max_concurrent": self.max_concurrent,
            "expires_at": self.expires_at,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "status": self.status(now),
        }


ADMIN = ApiKey(id="admin", name="admin", admin=True)


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    """The keys table: create, revoke, list; and the active keys by secret hash for the gateway."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time, readonly: bool = False) -> None:
        self.path = path
        self.clock = clock
        self.db = open_database(path, MIGRATIONS, readonly=readonly)

    def close(self) -> None:
        self.db.close()

    def create(
        self,
        name: str,
        *,
        models: Iterable[str] | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        max_concurrent: int | None = None,
        expires_at: float | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret (the only time the secret exists outside the client)."""
        if not name.strip():
            raise StateError("a key needs a name")
        secret = new_secret()
        key = ApiKey(
            id=ID_PREFIX + secrets.token_hex(6),
            name=name,
            hint=secret[-4:],
            models=frozenset(models) if models is not None else None,
            rpm=rpm,
            tpm=tpm,
            max_concurrent=max_concurrent,
            expires_at=expires_at,
            created_at=self.clock(),
        )
        models_json = orjson.dumps(sorted(key.models)).decode() if key.models is not None else None
        row = (key.id, name, key.hint, models_json, rpm, tpm, max_concurrent, expires_at, key.created_at)
        try:
            self.db.execute(
                f"INSERT INTO keys ({_COLUMNS}, secret_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
                (*row, hash_secret(secret)),
            )
        except sqlite3.IntegrityError:
            raise StateError(
                f"an active key named {name!r} exists", fix="pick another name, or revoke the old key first"
            ) from None
        return key, secret

    def revoke(self, name_or_id: str) -> ApiKey:
        """Revoke the active key with this name or id."""
        now = self.clock()
        found = self.db.execute(
            f"SELECT {_COLUMNS} FROM keys WHERE (id = ? OR name = ?) AND revoked_at IS NULL", (name_or_id, name_or_id)
        ).fetchone()
        if found is None:
            raise StateError(f"no active key named {name_or_id!r}", fix="`servestack keys list` shows the keys")
        self.db.execute("UPDATE keys SET revoked_at = ? WHERE id = ?", (now, found[0]))
        return _key((*found[:-1], now))

    def list(self) -> list[ApiKey]:
        rows = self.db.execute(f"SELECT {_COLUMNS} FROM keys ORDER BY created_at").fetchall()
        return [_key(row) for row in rows]

    def active(self) -> dict[str, ApiKey]:
        """Keys not revoked, by the hash of their secret (expiry is checked per request)."""
        rows = self.db.execute(f"SELECT secret_hash, {_COLUMNS} FROM keys WHERE revoked_at IS NULL").fetchall()
        return {row[0]: _key(row[1:]) for row in rows}

    def version(self) -> int:
        """Changes whenever another connection commits to the database (cheap: no table read)."""
        return int(self.db.execute("PRAGMA data_version").fetchone()[0])


def _key(row: tuple[object, ...]) -> ApiKey:
    key_id, name, hint, models, rpm, tpm, max_concurrent, expires_at, created_at, revoked_at = row
    return ApiKey(
        id=str(key_id),
        name=str(name),
        hint=str(hint),
        models=frozenset(orjson.loads(models)) if isinstance(models, str) else None,
        rpm=rpm if isinstance(rpm, int) else None,
        tpm=tpm if isinstance(tpm, int) else None,
        max_concurrent=max_concurrent if isinstance(max_concurrent, int) else None,
        expires_at=float(expires_at) if isinstance(expires_at, int | float) else None,
        created_at=float(created_at) if isinstance(created_at, int | float) else 0.0,
        revoked_at=float(revoked_at) if isinstance(revoked_at, int | float) else None,
    )

"""Who is calling: the key a request presents, checked against the active keys held in memory.

A request presents its key as `Authorization: Bearer <key>` or `x-api-key: <key>`. The check is a
SHA-256 and a dict lookup; the dict is swapped whole when the keys database changes (polled once a
second through SQLite's `data_version`, or at once after an admin-route change), so `servestack keys
create` and `revoke` in another shell take effect within a second and no request queries SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TypeVar

from servestack.errors import AuthenticationFailed, ServestackError
from servestack.gateway.admission.keys import ADMIN, ApiKey, KeyStore

log = logging.getLogger("servestack.gateway")
T = TypeVar("T")

KEY_SCOPE = "servestack.key"  # where the edge leaves the caller's key in the ASGI scope
MISSING = "You didn't provide an API key: send it as `Authorization: Bearer <key>` or `x-api-key: <key>`"
INVALID = "Incorrect API key provided"  # never echo the key back: it would land in client logs
EXPIRED = "This API key has expired"


class KeyRing:
    """The active keys by secret hash, plus the admin key; `required` makes a key mandatory."""

    def __init__(
        self,
        store: KeyStore | None,
        *,
        required: bool,
        admin_secret: str | None = None,
        clock: Callable[[], float] = time.time,
        reload_interval: float = 1.0,
    ) -> None:
        self.store = store
        self.required = required
        self.clock = clock
        self.reload_interval = reload_interval
        self._admin_digest = hashlib.sha256(admin_secret.encode()).digest() if admin_secret else None
        self._keys: MappingProxyType[bytes, ApiKey] = MappingProxyType(self._with_admin({}))
        self._version: int | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def admin_enabled(self) -> bool:
        return self._admin_digest is not None

    def authenticate(self, headers: list[tuple[bytes, bytes]]) -> ApiKey | None:
        """The key these request headers present; None when keys are optional and none (valid) was sent."""
        secret = presented_secret(headers)
        if secret is None:
            if self.required:
                raise AuthenticationFailed(MISSING)
            return None
        # A dict lookup by SHA-256: comparing hashes leaks nothing useful about the secret by timing.
        key = self._keys.get(hashlib.sha256(secret).digest())
        if key is None:
            if self.required:
                raise AuthenticationFailed(INVALID)
            return None  # e.g. the placeholder an SDK insists on sending
        if key.expires_at is not None and key.expired(self.clock()):
            raise AuthenticationFailed(EXPIRED)
        return key

    def load(self) -> None:
        """Read the active keys now (blocking; at startup and from a worker thread)."""
        if self.store is None:
            return
        self._version = self.store.version()
        active = {bytes.fromhex(digest): key for digest, key in self.store.active().items()}
        self._keys = MappingProxyType(self._with_admin(active))

    def _with_admin(self, keys: dict[bytes, ApiKey]) -> dict[bytes, ApiKey]:
        if self._admin_digest is not None:
            keys[self._admin_digest] = ADMIN
        return keys

    async def reload(self) -> None:
        async with self._lock:
            await asyncio.to_thread(self.load)

    async def start(self) -> None:
        await self.reload()
        if self.store is not None:
            self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.store is not None:
            self.store.close()

    async def _follow(self) -> None:
        assert self.store is not None
        while True:
            await asyncio.sleep(self.reload_interval)
            try:
                async with self._lock:
                    changed = await asyncio.to_thread(self.store.version) != self._version
                if changed:
                    await self.reload()
                    log.info("reloaded %d active API keys", len(self._keys))
            except ServestackError as error:  # a locked or vanished file: keep the keys we have
                log.warning("could not reload the API keys: %s", error.message)
            except Exception as exc:
                log.warning("could not reload the API keys: %s", exc)

    async def run_locked(self, action: Callable[[KeyStore], T]) -> T:
        """Run a store action (admin routes) off the event loop, then reload the keys."""
        if self.store is None:
            raise ServestackError("this gateway has no key store")
        store = self.store
        async with self._lock:
            result = await asyncio.to_thread(action, store)
            await asyncio.to_thread(self.load)
        return result


def presented_secret(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == b"authorization":
            if value[:7].lower() == b"bearer ":
                return value[7:].strip() or None
        elif name == b"x-api-key":
            return value.strip() or None
    return None


def visible(key: ApiKey | None, name: str, aliases: Mapping[str, str]) -> bool:
    """Whether a model listing shows `name` to the holder of `key` (keys see the models they may use)."""
    return key is None or key.models is None or name in key.models or aliases.get(name, name) in key.models

"""Admin routes, guarded by the admin key (`SERVESTACK_ADMIN_KEY`), and `/metrics`.

    GET  /admin/keys            the keys (never a secret or a hash)
    POST /admin/keys            create: {"name", "models"?, "rpm"?, "tpm"?, "max_concurrent"?, "expires_at"?}
    POST /admin/keys/revoke     {"key": name or id}
    POST /admin/keys/reload     re-read the keys database now
    GET  /admin/usage           totals: ?by=key|model&since=<unix seconds>

Changes made here take effect at once; the same changes made with `servestack keys` in another
shell take effect within a second.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from servestack.asgi import Handler, Receive, Scope, Send, query, read_json, send_bytes, send_json
from servestack.errors import (
    AdminKeyRequired,
    AuthenticationFailed,
    BadRequest,
    NotFound,
    PermissionDenied,
    StateError,
)
from servestack.gateway.admission.auth import KEY_SCOPE, KeyRing
from servestack.gateway.admission.keys import ApiKey, KeyStore
from servestack.gateway.telemetry.usage import GroupBy, UsageLedger

MAX_ADMIN_BODY = 64 * 1024
MAX_LIMIT = 2**53  # SQLite stores 64-bit integers; limits beyond this mean nothing anyway


class AdminApi:
    def __init__(
        self, keys: KeyRing | None, usage_path: Path | None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.keys = keys
        self.usage_path = usage_path
        self.clock = clock

    def routes(self) -> dict[tuple[str, str], Handler]:
        return {
            ("GET", "/admin/keys"): self._list_keys,
            ("POST", "/admin/keys"): self._create_key,
            ("POST", "/admin/keys/revoke"): self._revoke_key,
            ("POST", "/admin/keys/reload"): self._reload,
            ("GET", "/admin/usage"): self._usage,
        }

    def _ring(self, scope: Scope) -> KeyRing:
        key = scope.get(KEY_SCOPE)
        if self.keys is None or not self.keys.admin_enabled:
            raise PermissionDenied("The admin API is off: set SERVESTACK_ADMIN_KEY for the gateway")
        if key is None:
            raise AuthenticationFailed("Admin routes need the admin key")
        if not key.admin:
            raise AdminKeyRequired("Admin routes need the admin key (SERVESTACK_ADMIN_KEY), not a client key")
        return self.keys

    async def _list_keys(self, scope: Scope, receive: Receive, send: Send) -> None:
        ring = self._ring(scope)
        keys = await ring.run_locked(lambda store: store.list())
        now = self.clock()
        await send_json(send, 200, {"keys": [k.describe(now) for k in keys]})

    async def _create_key(self, scope: Scope, receive: Receive, send: Send) -> None:
        ring = self._ring(scope)
        request = await read_json(receive, MAX_ADMIN_BODY)
        name = request.get("name")
        if not isinstance(name, str) or not name.strip():
            raise BadRequest("a key needs a 'name'", param="name")
        options = {field: _optional_int(request, field) for field in ("rpm", "tpm", "max_concurrent")}
        models = request.get("models")
        if models is not None and not (isinstance(models, list) and all(isinstance(m, str) for m in models)):
            raise BadRequest("'models' must be a list of model names", param="models")
        expires = request.get("expires_at")
        if expires is not None and (not isinstance(expires, int | float) or isinstance(expires, bool)):
            raise BadRequest("'expires_at' must be a Unix time in seconds", param="expires_at")

        def create(store: KeyStore) -> tuple[ApiKey, str]:
            return store.create(name, models=models, expires_at=expires, **options)

        try:
            key, secret = await ring.run_locked(create)
        except StateError as error:  # an active key of that name exists
            raise BadRequest(_with_fix(error), param="name") from None
        await send_json(send, 201, {"key": key.describe(self.clock()), "secret": secret})

    async def _revoke_key(self, scope: Scope, receive: Receive, send: Send) -> None:
        ring = self._ring(scope)
        target = (await read_json(receive, MAX_ADMIN_BODY)).get("key")
        if not isinstance(target, str) or not target:
            raise BadRequest("say which key to revoke: {'key': name or id}", param="key")
        try:
            key = await ring.run_locked(lambda store: store.revoke(target))
        except StateError as error:  # no active key by that name or id
            raise NotFound(_with_fix(error), param="key") from None
        await send_json(send, 200, {"key": key.describe(self.clock())})

    async def _reload(self, scope: Scope, receive: Receive, send: Send) -> None:
        ring = self._ring(scope)
        await ring.reload()
        await send_json(send, 200, {"status": "reloaded"})

    async def _usage(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._ring(scope)
        if self.usage_path is None:
            raise BadRequest("the usage ledger is off (gateway.usage.enabled)")
        params = query(scope)
        by: GroupBy = "model" if params.get("by") == "model" else "key"
        if params.get("by", "key") not in ("key", "model"):
            raise BadRequest("'by' is key or model", param="by")
        try:
            since = float(params["since"]) if "since" in params else None
        except ValueError:
            since = math.nan
        if since is not None and not math.isfinite(since):
            raise BadRequest("'since' is a Unix time in seconds", param="since")
        path = self.usage_path

        def totals() -> list[dict[str, Any]]:
            ledger = UsageLedger(path, readonly=True)
            try:
                return [asdict(t) for t in ledger.totals(by, since)]
            finally:
                ledger.db.close()

        await send_json(send, 200, {"by": by, "totals": await asyncio.to_thread(totals)})


def _optional_int(request: dict[str, Any], field: str) -> int | None:
    value = request.get(field)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_LIMIT:
        raise BadRequest(f"'{field}' must be a positive integer (at most {MAX_LIMIT})", param=field)
    return value


def _with_fix(error: StateError) -> str:
    return f"{error.message} ({error.fix})" if error.fix else error.message


def metrics_handler(registry: CollectorRegistry) -> Handler:
    """GET /metrics: the Prometheus text exposition of `registry` (built off the event loop)."""

    async def metrics(scope: Scope, receive: Receive, send: Send) -> None:
        body = await asyncio.to_thread(generate_latest, registry)
        await send_bytes(send, 200, body, [(b"content-type", CONTENT_TYPE_LATEST.encode())])

    return metrics

"""Who may read the console and who may steer the stack from it.

                         gateway.auth on                   gateway.auth off
    read (overview, …)   the admin key                     anyone who reaches the gateway
    act (restart, …)     the admin key                     the admin key, or — with `gateway.console.actions:
                                                            localhost` — a browser on this machine
    keys and usage       the admin key (the /admin routes' own rule, admin.py)

The edge has already checked the key a request presents (`KEY_SCOPE`). "A browser on this machine" means
all three: the connection comes from a loopback address, the Host header names a loopback host (a page
from another site whose name resolves to 127.0.0.1 cannot pass), and an Origin header, when sent, is the
console's own (a form on another site cannot post an action).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from servestack.asgi import Scope, header
from servestack.errors import AdminKeyRequired, AuthenticationFailed, PermissionDenied
from servestack.gateway.admission.auth import KEY_SCOPE
from servestack.stack import ConsoleConfig

LOOPBACK_ADDRESSES = frozenset({"127.0.0.1", "::1"})
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
NO_ADMIN_KEY = "set SERVESTACK_ADMIN_KEY for the gateway and log in with it"


class ConsoleAccess:
    def __init__(self, config: ConsoleConfig, *, auth_required: bool, admin_enabled: bool) -> None:
        """`auth_required`: gateway.auth is on; `admin_enabled`: the gateway has an admin key."""
        self.auth_required = auth_required
        self.admin_enabled = admin_enabled
        self.local_actions = config.actions == "localhost"

    def check_read(self, scope: Scope) -> None:
        """Raise unless the caller may read the console's data."""
        if self.auth_required and not _is_admin(scope):
            raise self._refusal(scope, "The console needs the admin key while gateway.auth is on")

    def check_act(self, scope: Scope) -> str:
        """Raise unless the caller may steer services; who it is (`admin key`, `localhost`) when it may."""
        _same_origin(scope)
        if _is_admin(scope):
            return "admin key"
        if self.local_actions and not self.auth_required and _on_this_machine(scope):
            return "localhost"
        raise self._refusal(scope, "Console actions need the admin key")

    def session(self, scope: Scope) -> dict[str, Any]:
        """What the page needs to know of the caller and the gateway's rules (never a secret)."""
        admin = _is_admin(scope)
        local = self.local_actions and not self.auth_required and _on_this_machine(scope)
        return {
            "auth": self.auth_required,
            "admin_api": self.admin_enabled,
            "admin": admin,
            "can_read": admin or not self.auth_required,
            "can_act": admin or local,
            "local_actions": self.local_actions,
        }

    def _refusal(self, scope: Scope, message: str) -> Exception:
        if not self.admin_enabled:
            return PermissionDenied(f"{message}, and the admin API is off: {NO_ADMIN_KEY}")
        if scope.get(KEY_SCOPE) is None:
            return AuthenticationFailed(f"{message}: log in with it")
        return AdminKeyRequired(f"{message} (SERVESTACK_ADMIN_KEY), not a client key")


def _is_admin(scope: Scope) -> bool:
    key = scope.get(KEY_SCOPE)
    return key is not None and key.admin


def _on_this_machine(scope: Scope) -> bool:
    client = scope.get("client")
    host = header(scope, b"host")
    if client is None or client[0] not in LOOPBACK_ADDRESSES or host is None:
        return False
    name = urlsplit("//" + host.decode("latin-1")).hostname
    return name in LOOPBACK_NAMES


def _same_origin(scope: Scope) -> None:
    """A request a browser sends from another site's page carries that site's Origin: refuse it."""
    origin, host = header(scope, b"origin"), header(scope, b"host")
    if origin is None:
        return
    if host is None or urlsplit(origin.decode("latin-1")).netloc != host.decode("latin-1"):
        raise PermissionDenied("This action came from another site's page; use the console itself")

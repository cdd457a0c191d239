"""The console's page: static files shipped in the package, served at /ui (the edge sends browsers' `/` there).

The files are read once when the gateway is built (a few tens of KiB). They hold no data: the page reads
the JSON admin routes with the key the user logs in with, so they are served without a key even while
gateway.auth is on. The Content-Security-Policy lets the page load and connect to this gateway only — no
CDN, no other host — and no one frame it.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable

from servestack.asgi import Handler, Receive, Scope, Send, send_bytes, send_redirect

PREFIX = "/ui"
CONTENT_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
}
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        b"base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-cache"),
]


class StaticFiles:
    """`GET /ui/` (index.html), `GET /ui/<file>` for every shipped file, `GET /ui` → /ui/."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, bytes]] = {}  # path → (content type, body)
        root = resources.files(__package__) / "static"
        for path, item in _walk(root, ""):
            suffix = path[path.rfind(".") :]
            if suffix in CONTENT_TYPES:
                self.files[f"{PREFIX}/{path}"] = (CONTENT_TYPES[suffix], item.read_bytes())
        self.files[PREFIX + "/"] = self.files[f"{PREFIX}/index.html"]

    def routes(self) -> dict[tuple[str, str], Handler]:
        routes: dict[tuple[str, str], Handler] = {("GET", path): self._file for path in self.files}
        routes[("GET", PREFIX)] = self._to_ui
        return routes

    @property
    def public(self) -> frozenset[str]:
        """Paths served without a key (the page, not its data)."""
        return frozenset([*self.files, PREFIX])

    async def _file(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_type, body = self.files[scope["path"]]
        await send_bytes(send, 200, body, [(b"content-type", content_type), *SECURITY_HEADERS])

    async def _to_ui(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_redirect(send, PREFIX + "/")


def _walk(folder: Traversable, prefix: str) -> list[tuple[str, Traversable]]:
    found = []
    for item in folder.iterdir():
        path = f"{prefix}{item.name}"
        if item.is_dir():
            found += _walk(item, path + "/")
        elif item.is_file():
            found.append((path, item))
    return found

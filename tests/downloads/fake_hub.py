"""A fake Hugging Face hub on 127.0.0.1: the routes huggingface_hub calls for `servestack pull`.

    GET  /api/models/{org}/{name}[/revision/{rev}]?blobs=True   model info: sha, gated, siblings with sizes
    HEAD /{org}/{name}/resolve/{rev}/{path}                      ETag, X-Repo-Commit, Content-Length
                                                                 (+ X-Linked-Etag / X-Linked-Size for LFS files)
    GET  /{org}/{name}/resolve/{rev}/{path}                      the bytes; `Range: bytes=N-` answers 206

Errors are answered the way the real hub does (status, `X-Error-Code`, `X-Error-Message`), which is
what huggingface_hub turns into its exception classes: an unknown repository is 401 RepoNotFound
without a token and 404 with one; a gated repository's files are 401 GatedRepo without a token and
403 GatedRepo for a token without access; an unknown token is 401 "Invalid credentials".

Fault injection: `truncate_once` (path → byte count: the next GET of that path sends that many bytes
of the body, then drops the connection), `corrupt_once` (paths whose next GET sends as many bytes as
promised, one of them wrong) and `broken` (paths whose GET answers 500). Every request is recorded
in `requests`.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiohttp import web

LFS_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pth")


@dataclass
class FakeRepo:
    repo_id: str
    files: dict[str, bytes]
    gated: bool = False

    @property
    def sha(self) -> str:
        return hashlib.sha1(self.repo_id.encode()).hexdigest()


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    authorization: str | None
    range: str | None


@dataclass
class FakeHub:
    repos: Iterable[FakeRepo]
    tokens: dict[str, set[str]] = field(default_factory=dict)  # valid token → gated repos it may read
    truncate_once: dict[str, int] = field(default_factory=dict)  # "org/name/path" → bytes sent before the cut
    broken: set[str] = field(default_factory=set)  # "org/name/path"
    corrupt_once: set[str] = field(default_factory=set)  # "org/name/path"
    requests: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._repos = {r.repo_id: r for r in self.repos}
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self.url = ""

    def __enter__(self) -> FakeHub:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)  # type: ignore[union-attr]
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def gets(self, path: str) -> list[Seen]:
        """The GET requests for one file ("org/name/file")."""
        return [s for s in self.requests if s.method == "GET" and s.path.endswith(path) and "/resolve/" in s.path]

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/api/models/{org}/{name}", self._model_info)
        app.router.add_get("/api/models/{org}/{name}/revision/{revision}", self._model_info)
        app.router.add_route("*", "/{org}/{name}/resolve/{revision}/{path:.+}", self._resolve)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        ready.set()
        self._loop.run_forever()

    async def _model_info(self, request: web.Request) -> web.StreamResponse:
        self._record(request)
        repo = self._repos.get(f"{request.match_info['org']}/{request.match_info['name']}")
        if (denied := self._check_token(request, repo, reading_files=False)) is not None:
            return denied
        assert repo is not None
        if (revision := request.match_info.get("revision")) and revision not in ("main", repo.sha):
            return _error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        siblings = [_sibling(path, data) for path, data in repo.files.items()]
        return web.json_response(
            {
                "_id": repo.sha[:24],
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "sha": repo.sha,
                "private": False,
                "gated": "manual" if repo.gated else False,
                "disabled": False,
                "siblings": siblings,
            }
        )

    async def _resolve(self, request: web.Request) -> web.StreamResponse:
        self._record(request)
        info = request.match_info
        repo = self._repos.get(f"{info['org']}/{info['name']}")
        if (denied := self._check_token(request, repo, reading_files=True)) is not None:
            return denied
        assert repo is not None
        if info["revision"] not in ("main", repo.sha):
            return _error(404, "RevisionNotFound", f"Invalid rev id: {info['revision']}")
        data = repo.files.get(info["path"])
        if data is None:
            return _error(404, "EntryNotFound", f"{info['path']} does not exist on main", commit=repo.sha)
        key = f"{repo.repo_id}/{info['path']}"
        headers = _file_headers(info["path"], data, repo.sha)
        if request.method == "HEAD":
            return web.Response(headers={**headers, "Content-Length": str(len(data))})
        if key in self.broken:
            return _error(500, None, "Internal Error")
        return await self._send(request, key, data, headers)

    async def _send(self, request: web.Request, key: str, data: bytes, headers: dict[str, str]) -> web.StreamResponse:
        start = _range_start(request.headers.get("Range"))
        if start:
            response = web.StreamResponse(status=206, headers=headers)
            response.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        else:
            response = web.StreamResponse(status=200, headers=headers)
        body = data[start:]
        if key in self.corrupt_once:
            self.corrupt_once.discard(key)
            body = bytes([body[0] ^ 0xFF]) + body[1:]  # the right length, the wrong bytes
        response.content_length = len(body)
        await response.prepare(request)
        if key in self.truncate_once:
            await response.write(body[: self.truncate_once.pop(key)])
            assert request.transport is not None
            request.transport.close()  # the promised Content-Length never arrives
            return response
        await response.write(body)
        await response.write_eof()
        return response

    def _check_token(self, request: web.Request, repo: FakeRepo | None, *, reading_files: bool) -> web.Response | None:
        header = request.headers.get("Authorization")
        token = header.removeprefix("Bearer ") if header else None
        if token is not None and token not in self.tokens:
            return _error(401, None, "Invalid credentials in Authorization header")
        if repo is None:
            return _error(401 if token is None else 404, "RepoNotFound", "Repository not found")
        if repo.gated and reading_files:
            if token is None:
                return _error(
                    401,
                    "GatedRepo",
                    f"Access to model {repo.repo_id} is restricted. You must have access to it and be "
                    "authenticated to access it. Please log in.",
                )
            if repo.repo_id not in self.tokens[token]:
                return _error(
                    403,
                    "GatedRepo",
                    f"Access to model {repo.repo_id} is restricted and you are not in the authorized list.",
                )
        return None

    def _record(self, request: web.Request) -> None:
        self.requests.append(
            Seen(request.method, request.path, request.headers.get("Authorization"), request.headers.get("Range"))
        )


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _is_lfs(path: str) -> bool:
    return path.endswith(LFS_SUFFIXES)


def _lfs_pointer(data: bytes) -> bytes:
    sha = hashlib.sha256(data).hexdigest()
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n".encode()


def _sibling(path: str, data: bytes) -> dict[str, object]:
    sibling: dict[str, object] = {"rfilename": path, "size": len(data)}
    if _is_lfs(path):
        pointer = _lfs_pointer(data)
        sibling["blobId"] = git_blob_id(pointer)
        sibling["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": len(pointer)}
    else:
        sibling["blobId"] = git_blob_id(data)
    return sibling


def _file_headers(path: str, data: bytes, commit: str) -> dict[str, str]:
    headers = {"X-Repo-Commit": commit, "Accept-Ranges": "bytes"}
    if _is_lfs(path):
        headers["ETag"] = f'"{git_blob_id(_lfs_pointer(data))}"'
        headers["X-Linked-Etag"] = f'"{hashlib.sha256(data).hexdigest()}"'
        headers["X-Linked-Size"] = str(len(data))
    else:
        headers["ETag"] = f'"{git_blob_id(data)}"'
    return headers


def _range_start(header: str | None) -> int:
    if not header or not header.startswith("bytes="):
        return 0
    return int(header.removeprefix("bytes=").split("-", 1)[0] or 0)


def _error(status: int, code: str | None, message: str, *, commit: str | None = None) -> web.Response:
    headers = {"X-Error-Message": message}
    if code:
        headers["X-Error-Code"] = code
    if commit:
        headers["X-Repo-Commit"] = commit
    return web.json_response({"error": message}, status=status, headers=headers)

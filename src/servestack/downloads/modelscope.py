"""Downloads from ModelScope with the `modelscope` package (the optional extra `servestack[modelscope]`).

ModelScope models go into a plain folder (the models dir, or `--dir`), the way
`modelscope download --model ORG/NAME --local_dir DIR` lays them out; engines are given that folder.

The package is imported only when a ModelScope model is pulled. Its client sits behind the small
`ModelScopeClient` protocol so tests (and anything else) can inject another one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from servestack.downloads.hub import HubUnreachable, Listing, RemoteFile, walk_files
from servestack.downloads.progress import ProgressListener
from servestack.errors import DownloadError

INSTALL_FIX = "pip install 'servestack[modelscope]'  (or: pip install modelscope)"

# What ModelScope's snapshot_download calls per file: `callback(filename, file_size)`, then update(n), end().
ProgressCallbackFactory = Callable[[str, int], Any]


class ModelScopeClient(Protocol):
    def list_files(self, repo_id: str, revision: str | None) -> list[RemoteFile]:
        """The repository's files with sizes; ConnectionError when ModelScope cannot be reached."""

    def snapshot(
        self,
        repo_id: str,
        revision: str | None,
        local_dir: Path,
        files: Sequence[str],
        progress_callback: ProgressCallbackFactory,
    ) -> None:
        """Download `files` of the repository into `local_dir`."""


class ModelScopeHub:
    """The `Hub` for ModelScope: every model in its own folder, `local_dir`."""

    name = "ModelScope"

    def __init__(self, local_dir: Path, *, client: ModelScopeClient | None = None) -> None:
        self.local_dir = local_dir
        self._client = client

    def listing(self, repo_id: str, revision: str | None) -> Listing:
        client = self.client()
        with _converted(repo_id, listing=True):
            files = client.list_files(repo_id, revision)
        return Listing(tuple(files), revision=revision)

    def cached_listing(self, repo_id: str, revision: str | None) -> Listing | None:
        if not self.local_dir.is_dir():
            return None
        return Listing(walk_files(self.local_dir, skip=(".cache", "._____temp", ".msc", ".mv")), revision)

    def location(self, repo_id: str, listing: Listing) -> Path:
        return self.local_dir

    def storage(self, repo_id: str) -> Path:
        return self.local_dir

    def download(self, repo_id: str, listing: Listing, files: Sequence[RemoteFile], progress: ProgressListener) -> None:
        client = self.client()
        with _converted(repo_id, listing=False):
            client.snapshot(repo_id, listing.revision, self.local_dir, [f.path for f in files], _callback(progress))
        for file in files:
            progress.file_done(file.path)

    def finalize(self, repo_id: str, listing: Listing) -> None:
        pass

    def client(self) -> ModelScopeClient:
        if self._client is None:
            self._client = PackageClient()
        return self._client


class PackageClient:
    """The real client: the installed `modelscope` package (≥ 1.30, which has `progress_callbacks`)."""

    def __init__(self) -> None:
        try:
            from modelscope.hub.api import HubApi
            from modelscope.hub.snapshot_download import snapshot_download
        except ImportError:
            raise DownloadError(
                "downloading from ModelScope needs the modelscope package, which is not installed", fix=INSTALL_FIX
            ) from None
        self._api = HubApi()
        self._snapshot_download = snapshot_download

    def list_files(self, repo_id: str, revision: str | None) -> list[RemoteFile]:
        import requests  # a dependency of modelscope

        kwargs = {"revision": revision} if revision else {}
        try:
            entries = self._api.get_model_files(repo_id, recursive=True, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ConnectionError(str(exc)) from None
        return [
            RemoteFile(e["Path"], e.get("Size"), sha256=e.get("Sha256") or None)
            for e in entries
            if e.get("Type", "blob") != "tree"
        ]

    def snapshot(
        self,
        repo_id: str,
        revision: str | None,
        local_dir: Path,
        files: Sequence[str],
        progress_callback: ProgressCallbackFactory,
    ) -> None:
        self._snapshot_download(
            model_id=repo_id,
            revision=revision,
            local_dir=str(local_dir),
            allow_patterns=list(files),
            progress_callbacks=[progress_callback],
        )


def _callback(progress: ProgressListener) -> ProgressCallbackFactory:
    class FileProgress:
        def __init__(self, filename: str, file_size: int) -> None:
            self.filename = filename
            progress.file_started(filename, file_size or None)

        def update(self, size: int) -> None:
            progress.advance(self.filename, size)

        def end(self) -> None:
            pass

    return FileProgress


@contextmanager
def _converted(repo_id: str, *, listing: bool) -> Iterator[None]:
    try:
        yield
    except DownloadError:
        raise
    except (ConnectionError, TimeoutError) as exc:
        if listing:
            raise HubUnreachable(str(exc) or type(exc).__name__) from None
        raise DownloadError(
            f"the connection to ModelScope broke while downloading {repo_id}: {exc}",
            fix="run the same pull again: completed files are kept",
        ) from None
    # The modelscope package's exception classes changed between releases (requests errors, its own
    # HubError tree since 1.3x), so its boundary converts any other exception into one clear line.
    except Exception as exc:
        raise DownloadError(
            f"ModelScope download of {repo_id} failed: {type(exc).__name__}: {exc}",
            fix="check the id (ORG/NAME on modelscope.cn) and the network; a private model needs "
            "MODELSCOPE_API_TOKEN or `modelscope login`",
        ) from None

"""Downloads from the Hugging Face hub (or any endpoint that speaks its API) with `huggingface_hub`.

One `model_info(files_metadata=True)` call lists the files with their sizes and resolves the
revision to a commit; then each chosen file is fetched with `hf_hub_download` pinned to that commit,
so a pull never mixes two revisions. Files land in the HF cache layout (`models--ORG--NAME/blobs`,
`snapshots/COMMIT`, `refs/REVISION`) that engines read, or in a plain folder (`--dir`).

Resuming: huggingface_hub resumes a transfer whose connection broke with a `Range` request, and a
pull that stopped keeps every completed file, so running it again fetches only what is missing.
(Since huggingface_hub 1.x the bytes of a file still in flight when the process dies are discarded.)

huggingface_hub's exceptions are converted here, where they enter, into DownloadError (or
HubUnreachable, which lets `pull` fall back to the local copy). The token is never put in a message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from tqdm import tqdm

from servestack.downloads.hf_environment import HfEnvironment
from servestack.downloads.hub import HubUnreachable, Listing, RemoteFile, walk_files
from servestack.downloads.progress import ProgressListener
from servestack.errors import DownloadError

DEFAULT_REVISION = "main"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class HuggingFaceHub:
    """The `Hub` for Hugging Face: the HF cache by default, or `local_dir` (a plain folder) if given."""

    name = "Hugging Face"

    def __init__(self, environment: HfEnvironment, *, local_dir: Path | None = None) -> None:
        self.env = environment
        self.local_dir = local_dir

    def listing(self, repo_id: str, revision: str | None) -> Listing:
        if self.env.offline:
            raise HubUnreachable("HF_HUB_OFFLINE is set")
        api = HfApi(endpoint=self.env.endpoint, token=self._token)
        with self._converted(repo_id, revision):
            info = api.model_info(repo_id, revision=revision, files_metadata=True)
        files = tuple(
            RemoteFile(s.rfilename, s.size, sha256=s.lfs.sha256 if s.lfs else None, blob_id=s.blob_id)
            for s in info.siblings or ()
        )
        return Listing(files, revision=revision, commit=info.sha, gated=bool(info.gated))

    def cached_listing(self, repo_id: str, revision: str | None) -> Listing | None:
        if self.local_dir is not None:
            return Listing(walk_files(self.local_dir, skip=(".cache",)), revision) if self.local_dir.is_dir() else None
        commit = self._cached_commit(repo_id, revision)
        snapshot = self._repo_folder(repo_id) / "snapshots" / (commit or "")
        if commit is None or not snapshot.is_dir():
            return None
        return Listing(walk_files(snapshot), revision, commit)

    def location(self, repo_id: str, listing: Listing) -> Path:
        if self.local_dir is not None:
            return self.local_dir
        return self._repo_folder(repo_id) / "snapshots" / (listing.commit or "unknown")

    def storage(self, repo_id: str) -> Path:
        return self.local_dir if self.local_dir is not None else self.env.cache_dir

    def download(self, repo_id: str, listing: Listing, files: Sequence[RemoteFile], progress: ProgressListener) -> None:
        if listing.gated and not self.env.token:
            raise DownloadError(
                f"{repo_id} is gated: downloading it needs a token of an account that accepted its licence",
                fix=self._licence_fix(repo_id),
            )
        for file in files:
            with self._converted(repo_id, listing.revision, path=file.path):
                hf_hub_download(
                    repo_id,
                    file.path,
                    revision=listing.commit or listing.revision,
                    cache_dir=None if self.local_dir else self.env.cache_dir,
                    local_dir=self.local_dir,
                    endpoint=self.env.endpoint,
                    token=self._token,
                    tqdm_class=progress_bar_class(progress, file),
                )
            progress.file_done(file.path)

    def finalize(self, repo_id: str, listing: Listing) -> None:
        """Point `refs/REVISION` at the commit, as snapshot_download does, so engines find the snapshot by id."""
        revision = listing.revision or DEFAULT_REVISION
        if self.local_dir is not None or listing.commit is None or revision == listing.commit:
            return
        ref = self._repo_folder(repo_id) / "refs" / revision
        if ref.is_file() and ref.read_text() == listing.commit:
            return
        ref.parent.mkdir(parents=True, exist_ok=True)
        partial = ref.with_name(f"{ref.name}.{os.getpid()}.tmp")
        partial.write_text(listing.commit)
        partial.replace(ref)

    @property
    def _token(self) -> str | bool:
        # False, not None: None would let huggingface_hub look for a token on its own.
        return self.env.token or False

    def _repo_folder(self, repo_id: str) -> Path:
        return self.env.cache_dir / ("models--" + repo_id.replace("/", "--"))

    def _cached_commit(self, repo_id: str, revision: str | None) -> str | None:
        revision = revision or DEFAULT_REVISION
        if _COMMIT.match(revision):
            return revision
        try:
            return (self._repo_folder(repo_id) / "refs" / revision).read_text().strip() or None
        except OSError:
            return None

    def _licence_fix(self, repo_id: str) -> str:
        return (
            f"accept the licence at {self.env.endpoint}/{repo_id} while logged in, then set HF_TOKEN "
            "(in the environment or the .env beside the stack file) to a token of that account"
        )

    @contextmanager
    def _converted(self, repo_id: str, revision: str | None, *, path: str | None = None) -> Iterator[None]:
        """Turn huggingface_hub's and httpx2's exceptions into DownloadError / HubUnreachable."""
        try:
            yield
        except (OfflineModeIsEnabled, LocalEntryNotFoundError, httpx2.TransportError) as exc:
            if path is None:
                raise HubUnreachable(_reason(exc)) from None
            raise DownloadError(
                f"the connection to {self.env.endpoint} broke while downloading {path} of {repo_id}: {_reason(exc)}",
                fix="run the same pull again: completed files are kept",
            ) from None
        except HfHubHTTPError as exc:
            raise self._http_error(exc, repo_id, revision, path) from None
        except EntryNotFoundError:
            raise DownloadError(f"{path} is no longer in {repo_id}", fix="run the pull again") from None
        except OSError as exc:
            raise DownloadError(
                f"could not store {path or 'the files'} of {repo_id}: {exc.strerror or exc}",
                fix="run the same pull again: completed files are kept",
            ) from None

    def _http_error(self, exc: HfHubHTTPError, repo_id: str, revision: str | None, path: str | None) -> DownloadError:
        status = exc.response.status_code if exc.response is not None else None
        if isinstance(exc, GatedRepoError):
            has = "the token in use has no access to it yet" if self.env.token else "no HF token is set"
            return DownloadError(f"{repo_id} is gated and {has}", fix=self._licence_fix(repo_id))
        if status == 401 and self.env.token and not isinstance(exc, RepositoryNotFoundError):
            return DownloadError(
                f"{self.env.endpoint} rejected the HF token (401)",
                fix=f"HF_TOKEN is invalid or expired: create a new one at {self.env.endpoint}/settings/tokens",
            )
        if isinstance(exc, RepositoryNotFoundError):
            return DownloadError(
                f"model {repo_id} was not found on {self.env.endpoint}",
                fix="check the id (ORG/NAME, as on the model's page); a private model needs HF_TOKEN "
                "of an account that can read it",
            )
        if isinstance(exc, RevisionNotFoundError):
            return DownloadError(
                f"{repo_id} has no revision {revision!r}", fix="check --revision (a branch, a tag or a commit)"
            )
        what = f"{path} of {repo_id}" if path else repo_id
        return DownloadError(
            f"{self.env.endpoint} answered {status} for {what}",
            fix="the hub may be having trouble; try again later (completed files are kept)",
        )


def progress_bar_class(progress: ProgressListener, file: RemoteFile) -> type[tqdm]:
    """A tqdm class, as huggingface_hub's `tqdm_class` expects, that reports one file's bytes to `progress`.

    It stays a disabled tqdm so nothing is printed; huggingface_hub creates one per transfer and keeps
    it across its resume retries.
    """

    class FileProgress(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            progress.file_started(file.path, file.size)
            if self.n:
                progress.advance(file.path, int(self.n))

        def update(self, n: float | None = 1) -> bool | None:
            if n:
                progress.advance(file.path, int(n))
            return None

        def update_transfer(self, n: float | None = 1) -> None:
            # Present so Xet transfers report through this one bar (reconstructed bytes count, not wire bytes).
            pass

        def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
            pass

    return FileProgress


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

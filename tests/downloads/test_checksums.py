"""Every pulled file is checked against the hub's published checksums (SHA-256 for LFS files, the git blob id
for the others) and recorded; a damaged download is removed and named, and the next pull fetches it again."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from servestack.downloads import HfEnvironment, PullStatus, parse_reference, pull_model
from servestack.downloads.huggingface import HuggingFaceHub
from servestack.downloads.records import CHECKED_GIT_BLOB, CHECKED_SHA256, RecordStore
from servestack.errors import DownloadError
from tests.downloads.conftest import Pull, gguf_repo, sharded_repo, tiny_repo
from tests.downloads.fake_hub import FakeHub


def hf_hub(fake: FakeHub, cache: Path) -> HuggingFaceHub:
    return HuggingFaceHub(HfEnvironment(endpoint=fake.url, cache_dir=cache))


def records_of(pull: Pull) -> dict[str, dict[str, object]]:
    """path inside the model folder → its record, over every record `servestack pull` wrote."""
    found: dict[str, dict[str, object]] = {}
    for path in (pull.home / "checksums").glob("*.json"):
        found.update(json.loads(path.read_text())["files"])
    return found


def test_a_corrupted_download_is_named_removed_and_fetched_again(pull: Pull, fake_hub: FakeHub) -> None:
    repo = gguf_repo()
    fake_hub.corrupt_once.add("org/tiny-GGUF/tiny-Q8_0.gguf")

    failed = pull("org/tiny-GGUF:Q8_0")

    data = repo.files["tiny-Q8_0.gguf"]
    assert failed.code == 1, failed.output
    assert "error: tiny-Q8_0.gguf of org/tiny-GGUF:Q8_0 is corrupt: its SHA-256 is " in failed.err
    assert f"the hub published {hashlib.sha256(data).hexdigest()}; the file was removed" in failed.err
    assert "Traceback" not in failed.output
    blobs = pull.cache / "models--org--tiny-GGUF" / "blobs"
    assert not (pull.snapshot(repo) / "tiny-Q8_0.gguf").exists() and not list(blobs.iterdir())
    assert records_of(pull) == {}

    again = pull("org/tiny-GGUF:Q8_0")

    assert again.code == 0, again.output
    assert "checked 1 files against the hub's checksums" in again.out
    assert (pull.snapshot(repo) / "tiny-Q8_0.gguf").read_bytes() == data
    assert records_of(pull)["tiny-Q8_0.gguf"] == {
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "checked": CHECKED_SHA256,
    }


def test_a_resumed_transfer_is_checked_whole(pull: Pull, fake_hub: FakeHub) -> None:
    shard = "model-00002-of-00002.safetensors"
    fake_hub.truncate_once[f"org/sharded/{shard}"] = 10 * 1024 * 1024 + 4096

    run = pull("org/sharded")

    assert run.code == 0, run.output
    assert [g.range for g in fake_hub.gets(shard)] == [None, f"bytes={10 * 1024 * 1024}-"]
    recorded = records_of(pull)
    data = sharded_repo().files[shard]
    assert recorded[shard] == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "checked": CHECKED_SHA256}
    assert recorded["config.json"]["checked"] == CHECKED_GIT_BLOB
    assert "checked 4 files" in run.out


def test_small_files_are_checked_against_the_git_blob_id(fake_hub: FakeHub, tmp_path: Path) -> None:
    fake_hub.corrupt_once.add("org/tiny/config.json")
    reference = parse_reference("org/tiny")
    hub = hf_hub(fake_hub, tmp_path / "hub")
    records = RecordStore(tmp_path / "checksums")

    with pytest.raises(DownloadError, match=r"config\.json of org/tiny is corrupt: its git blob id is [0-9a-f]{40}"):
        pull_model(reference, hub, records=records)
    result = pull_model(reference, hub, records=records)

    assert result.checked == ("config.json",)
    assert (result.location / "config.json").read_bytes() == tiny_repo().files["config.json"]
    stored = records.read(result.location)
    assert stored is not None and sorted(stored.files) == sorted(f.path for f in result.selection.files)


def test_a_complete_file_without_a_record_is_checked_once(fake_hub: FakeHub, tmp_path: Path) -> None:
    reference = parse_reference("org/tiny-GGUF:Q4_K_M")
    hub = hf_hub(fake_hub, tmp_path / "hub")
    first = pull_model(reference, hub)  # no record kept: as if another tool had downloaded it
    (first.location / "tiny-Q4_K_M.gguf").resolve().write_bytes(b"\0" * len(gguf_repo().files["tiny-Q4_K_M.gguf"]))
    records = RecordStore(tmp_path / "checksums")

    with pytest.raises(DownloadError, match=r"tiny-Q4_K_M\.gguf of org/tiny-GGUF:Q4_K_M is corrupt"):
        pull_model(reference, hub, records=records)
    fetched = pull_model(reference, hub, records=records)
    again = pull_model(reference, hub, records=records)

    assert fetched.status is PullStatus.DOWNLOADED and fetched.checked == ("tiny-Q4_K_M.gguf",)
    assert again.status is PullStatus.COMPLETE and again.checked == ()

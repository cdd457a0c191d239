"""`pull_model` with its seams: an injected free-space function, a recording progress listener, a fake
ModelScope client (ModelScope cannot be reached from here)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import pytest

from servestack.downloads import (
    HfEnvironment,
    PullStatus,
    RemoteFile,
    make_hub,
    parse_reference,
    pull_model,
)
from servestack.downloads.huggingface import HuggingFaceHub
from servestack.downloads.modelscope import ProgressCallbackFactory
from servestack.errors import DownloadError, StackError
from servestack.stack import resolve_model
from tests.downloads.conftest import sharded_repo, tiny_repo, weights
from tests.downloads.fake_hub import FakeHub


class RecordingProgress:
    def __init__(self) -> None:
        self.started: list[tuple[str, list[str], int]] = []
        self.bytes: dict[str, int] = defaultdict(int)
        self.done: list[str] = []
        self.finished = 0

    def start(self, label: str, files: Sequence[RemoteFile], total_bytes: int) -> None:
        self.started.append((label, [f.path for f in files], total_bytes))

    def file_started(self, path: str, size: int | None) -> None:
        self.bytes.setdefault(path, 0)

    def advance(self, path: str, n: int) -> None:
        self.bytes[path] += n

    def file_done(self, path: str) -> None:
        self.done.append(path)

    def finish(self) -> None:
        self.finished += 1


def hf_hub(fake: FakeHub, cache: Path, local_dir: Path | None = None) -> HuggingFaceHub:
    return HuggingFaceHub(HfEnvironment(endpoint=fake.url, cache_dir=cache), local_dir=local_dir)


def test_disk_space_is_checked_before_anything_is_downloaded(fake_hub: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"not enough disk space for org/tiny: it needs 300\.1 kB") as error:
        pull_model(parse_reference("org/tiny"), hf_hub(fake_hub, tmp_path / "hub"), free_bytes=lambda _: 1000)

    assert "has 1.0 kB (1,000 bytes) free" in error.value.message
    assert [s.path for s in fake_hub.requests] == ["/api/models/org/tiny"]
    assert not (tmp_path / "hub").exists()


def test_only_missing_files_count_against_free_space(fake_hub: FakeHub, tmp_path: Path) -> None:
    reference = parse_reference("org/tiny")
    hub = hf_hub(fake_hub, tmp_path / "hub")
    pull_model(reference, hub, include=["*.json"])

    needed = tiny_repo().files["model.safetensors"]
    result = pull_model(reference, hub, free_bytes=lambda _: len(needed))
    again = pull_model(reference, hub, free_bytes=lambda _: 0)

    assert [f.path for f in result.downloaded] == ["model.safetensors"]
    assert again.status is PullStatus.COMPLETE and again.downloaded == ()


def test_progress_reports_every_byte_once_even_across_a_resume(fake_hub: FakeHub, tmp_path: Path) -> None:
    repo = sharded_repo()
    big = "model-00002-of-00002.safetensors"
    fake_hub.truncate_once[f"org/sharded/{big}"] = 10 * 1024 * 1024 + 100
    progress = RecordingProgress()

    result = pull_model(parse_reference("org/sharded"), hf_hub(fake_hub, tmp_path / "hub"), progress=progress)

    sizes = {path: len(data) for path, data in repo.files.items()}
    assert progress.started == [("org/sharded", list(sizes), sum(sizes.values()))]
    assert dict(progress.bytes) == sizes
    assert progress.done == list(sizes) and progress.finished == 1
    assert result.downloaded_bytes == sum(sizes.values())


def test_local_dir_download_and_offline_fallback(fake_hub: FakeHub, tmp_path: Path) -> None:
    target = tmp_path / "weights" / "tiny"
    reference = parse_reference("org/tiny")
    pull_model(reference, hf_hub(fake_hub, tmp_path / "hub", local_dir=target))
    offline = HuggingFaceHub(HfEnvironment(cache_dir=tmp_path / "hub", offline=True), local_dir=target)

    result = pull_model(reference, offline)

    assert result.status is PullStatus.LOCAL_COPY and result.location == target
    assert sorted(f.path for f in result.selection.files) == sorted(
        ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"]
    )


class FakeModelScope:
    """A ModelScopeClient over an in-memory repository that records what it was asked."""

    def __init__(self, files: dict[str, bytes], *, unreachable: bool = False) -> None:
        self.files = files
        self.unreachable = unreachable
        self.snapshots: list[list[str]] = []

    def list_files(self, repo_id: str, revision: str | None) -> list[RemoteFile]:
        if self.unreachable:
            raise ConnectionError("www.modelscope.cn: Name or service not known")
        if repo_id != "ZhipuAI/GLM-4.7":
            raise ValueError(f"The model: {repo_id} not exists")
        return [RemoteFile(path, len(data)) for path, data in self.files.items()]

    def snapshot(
        self,
        repo_id: str,
        revision: str | None,
        local_dir: Path,
        files: Sequence[str],
        progress_callback: ProgressCallbackFactory,
    ) -> None:
        self.snapshots.append(list(files))
        for path in files:
            callback = progress_callback(path, len(self.files[path]))
            (local_dir / path).parent.mkdir(parents=True, exist_ok=True)
            (local_dir / path).write_bytes(self.files[path])
            callback.update(len(self.files[path]))
            callback.end()


GLM_FILES = {
    "config.json": b'{"model_type": "glm4_moe"}',
    "configuration.json": b'{"framework": "pytorch"}',
    "tokenizer.json": b"{}",
    "chat_template.jinja": b"{{ messages }}",
    "model-00001-of-00002.safetensors": weights(20_000, 9),
    "model-00002-of-00002.safetensors": weights(20_000, 10),
    "pytorch_model.bin": weights(100, 11),
}


def test_modelscope_pull_into_the_models_dir_and_resolve(tmp_path: Path) -> None:
    client = FakeModelScope(GLM_FILES)
    reference = parse_reference("modelscope:ZhipuAI/GLM-4.7")
    hub = make_hub(reference, environ={}, models_dir=tmp_path / "models", modelscope_client=client)
    with pytest.raises(StackError, match="has not been downloaded") as missing:
        resolve_model(str(reference), models_dir=tmp_path / "models")
    progress = RecordingProgress()

    result = pull_model(reference, hub, progress=progress)
    again = pull_model(reference, hub)

    folder = tmp_path / "models" / "modelscope" / "ZhipuAI" / "GLM-4.7"
    assert missing.value.fix == "servestack pull modelscope:ZhipuAI/GLM-4.7"
    assert result.status is PullStatus.DOWNLOADED and result.location == folder
    assert sorted(client.snapshots[0]) == sorted(set(GLM_FILES) - {"pytorch_model.bin"})
    assert (folder / "model-00002-of-00002.safetensors").read_bytes() == GLM_FILES["model-00002-of-00002.safetensors"]
    assert sum(progress.bytes.values()) == result.downloaded_bytes
    assert again.status is PullStatus.COMPLETE and len(client.snapshots) == 1
    assert resolve_model(str(reference), models_dir=tmp_path / "models") == str(folder)


def test_modelscope_unreachable_uses_the_local_copy_or_fails(tmp_path: Path) -> None:
    reference = parse_reference("modelscope:ZhipuAI/GLM-4.7")
    models = tmp_path / "models"
    offline = make_hub(reference, environ={}, models_dir=models, modelscope_client=FakeModelScope({}, unreachable=True))
    with pytest.raises(DownloadError, match=r"cannot reach ModelScope .*Name or service not known"):
        pull_model(reference, offline)
    online = make_hub(reference, environ={}, models_dir=models, modelscope_client=FakeModelScope(GLM_FILES))
    pull_model(reference, online)

    result = pull_model(reference, offline)

    assert result.status is PullStatus.LOCAL_COPY
    assert len(result.selection.files) == 6


def test_modelscope_errors_and_disk_space_are_one_clear_line(tmp_path: Path) -> None:
    client = FakeModelScope(GLM_FILES)
    unknown = parse_reference("modelscope:ZhipuAI/GLM-9")
    reference = parse_reference("modelscope:ZhipuAI/GLM-4.7")

    with pytest.raises(DownloadError, match=r"ModelScope download of ZhipuAI/GLM-9 failed: ValueError: The model"):
        pull_model(unknown, make_hub(unknown, environ={}, models_dir=tmp_path, modelscope_client=client))
    with pytest.raises(DownloadError, match=r"not enough disk space for modelscope:ZhipuAI/GLM-4\.7"):
        hub = make_hub(reference, environ={}, models_dir=tmp_path, modelscope_client=client)
        pull_model(reference, hub, free_bytes=lambda _: 10)
    assert client.snapshots == []

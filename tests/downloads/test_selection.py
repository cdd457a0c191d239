"""Which files a pull fetches, over file listings shaped like real repositories."""

from __future__ import annotations

import pytest

from servestack.downloads import RemoteFile, select_files
from servestack.downloads.selection import quant_of
from servestack.errors import DownloadError


def listing(*paths: str) -> list[RemoteFile]:
    return [RemoteFile(p, 100) for p in paths]


def chosen(files: list[RemoteFile], **kwargs: object) -> list[str]:
    return [f.path for f in select_files(files, **kwargs).files]  # type: ignore[arg-type]


CODESTRAL = listing(  # mistralai/Codestral-22B-v0.1: HF shards and Mistral's consolidated file, the same weights
    ".gitattributes",
    "README.md",
    "config.json",
    "consolidated.safetensors",
    "generation_config.json",
    *(f"model-0000{i}-of-00009.safetensors" for i in range(1, 10)),
    "model.safetensors.index.json",
    "params.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer.model.v3",
    "tokenizer_config.json",
)
LLAMA = listing(  # meta-llama/Llama-3.1-8B-Instruct: a copy of the weights in original/ as .pth
    "LICENSE",
    "README.md",
    "USE_POLICY.md",
    "config.json",
    "generation_config.json",
    *(f"model-0000{i}-of-00004.safetensors" for i in range(1, 5)),
    "model.safetensors.index.json",
    "original/consolidated.00.pth",
    "original/params.json",
    "original/tokenizer.model",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
)
GLM = listing(  # remote code, a Jinja chat template
    "README.md",
    "chat_template.jinja",
    "config.json",
    "configuration_glm.py",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "model.safetensors.index.json",
    "modeling_glm.py",
    "tokenizer.json",
    "tokenizer_config.json",
)
GPT2 = listing(  # several frameworks' weights side by side
    "64-8bits.tflite",
    "config.json",
    "flax_model.msgpack",
    "merges.txt",
    "model.safetensors",
    "onnx/decoder_model.onnx",
    "pytorch_model.bin",
    "rust_model.ot",
    "tf_model.h5",
    "tokenizer.json",
    "vocab.json",
)
OLD_BIN = listing("config.json", "pytorch_model.bin", "special_tokens_map.json", "vocab.txt")
BARTOWSKI = listing(
    "README.md",
    "Qwen2.5-7B-Instruct-IQ4_XS.gguf",
    "Qwen2.5-7B-Instruct-Q4_K_S.gguf",
    "Qwen2.5-7B-Instruct-Q4_K_M.gguf",
    "Qwen2.5-7B-Instruct-Q8_0.gguf",
    "Qwen2.5-7B-Instruct-f16.gguf",
    "Qwen2.5-7B-Instruct.imatrix",
)
SPLIT_GGUF = listing(
    "Q4_K_M/Big-Q4_K_M-00001-of-00002.gguf",
    "Q4_K_M/Big-Q4_K_M-00002-of-00002.gguf",
    "Q8_0/Big-Q8_0-00001-of-00003.gguf",
    "Q8_0/Big-Q8_0-00002-of-00003.gguf",
    "Q8_0/Big-Q8_0-00003-of-00003.gguf",
    "mmproj-Big-f16.gguf",
)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            CODESTRAL,
            [
                "config.json",
                "generation_config.json",
                "model.safetensors.index.json",
                "params.json",
                "special_tokens_map.json",
                "tokenizer.json",
                "tokenizer.model",
                "tokenizer.model.v3",
                "tokenizer_config.json",
                *(f"model-0000{i}-of-00009.safetensors" for i in range(1, 10)),
            ],
        ),
        (
            LLAMA,
            [
                "config.json",
                "generation_config.json",
                "model.safetensors.index.json",
                "special_tokens_map.json",
                "tokenizer.json",
                "tokenizer_config.json",
                *(f"model-0000{i}-of-00004.safetensors" for i in range(1, 5)),
            ],
        ),
        (
            GLM,
            [
                "chat_template.jinja",
                "config.json",
                "configuration_glm.py",
                "model.safetensors.index.json",
                "modeling_glm.py",
                "tokenizer.json",
                "tokenizer_config.json",
                "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors",
            ],
        ),
        (GPT2, ["config.json", "merges.txt", "tokenizer.json", "vocab.json", "model.safetensors"]),
        (OLD_BIN, ["config.json", "special_tokens_map.json", "vocab.txt", "pytorch_model.bin"]),
        (BARTOWSKI, ["Qwen2.5-7B-Instruct-Q4_K_M.gguf"]),
        (SPLIT_GGUF, ["Q4_K_M/Big-Q4_K_M-00001-of-00002.gguf", "Q4_K_M/Big-Q4_K_M-00002-of-00002.gguf"]),
        (listing("README.md", "model.gguf"), ["model.gguf"]),
    ],
    ids=["codestral", "llama-original", "glm-remote-code", "gpt2-frameworks", "bin-only", "gguf", "split-gguf", "one"],
)
def test_automatic_choice(files: list[RemoteFile], expected: list[str]) -> None:
    assert chosen(files) == expected


def test_skipped_files_are_explained() -> None:
    codestral = select_files(CODESTRAL)
    split = select_files(SPLIT_GGUF)

    assert codestral.skipped == ("consolidated.safetensors (the same weights in Mistral's format)",)
    assert codestral.description == "safetensors weights (9 files) with 9 config/tokenizer file(s)"
    assert select_files(LLAMA).skipped == ("1 file(s) in other weight formats or folders (.pth)",)
    assert split.description == "GGUF quant Q4_K_M (2 files)"
    assert split.skipped == (
        "1 mmproj file(s) (vision projectors; --include to add them)",
        "3 GGUF file(s) of other quants (Q4_K_M, Q8_0)",
    )


@pytest.mark.parametrize(
    ("files", "quant", "expected"),
    [
        (BARTOWSKI, "Q8_0", ["Qwen2.5-7B-Instruct-Q8_0.gguf"]),
        (BARTOWSKI, "q8_0", ["Qwen2.5-7B-Instruct-Q8_0.gguf"]),
        (BARTOWSKI, "F16", ["Qwen2.5-7B-Instruct-f16.gguf"]),
        (SPLIT_GGUF, "Q8_0", [f"Q8_0/Big-Q8_0-0000{i}-of-00003.gguf" for i in (1, 2, 3)]),
    ],
)
def test_named_quant(files: list[RemoteFile], quant: str, expected: list[str]) -> None:
    assert chosen(files, quant=quant) == expected


def test_missing_quant_lists_the_available_ones() -> None:
    with pytest.raises(DownloadError) as error:
        select_files(BARTOWSKI, quant="Q2_K")
    assert error.value.message == "the repository has no GGUF quant Q2_K"
    assert error.value.fix == "available quants: F16, IQ4_XS, Q4_K_M, Q4_K_S, Q8_0"


def test_no_preferred_quant_asks_to_choose() -> None:
    with pytest.raises(DownloadError, match="cannot tell which GGUF file") as error:
        select_files(listing("m-Q2_K.gguf", "m-Q3_K_S.gguf"))
    assert "available quants: Q2_K, Q3_K_S" in str(error.value.fix)


@pytest.mark.parametrize(
    ("files", "include", "expected"),
    [
        (GLM, ["*.json"], ["config.json", "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json"]),
        (LLAMA, ["original/"], ["original/consolidated.00.pth", "original/params.json", "original/tokenizer.model"]),
        (LLAMA, ["config.json", "*.md"], ["README.md", "USE_POLICY.md", "config.json"]),
        (BARTOWSKI, ["*-Q8_0.gguf"], ["Qwen2.5-7B-Instruct-Q8_0.gguf"]),
    ],
)
def test_include_replaces_the_automatic_choice(
    files: list[RemoteFile], include: list[str], expected: list[str]
) -> None:
    assert sorted(chosen(files, include=include)) == sorted(expected)


def test_include_matching_nothing_shows_some_files() -> None:
    with pytest.raises(DownloadError, match=r"no file of the repository matches \*\.gguf") as error:
        select_files(OLD_BIN, include=["*.gguf"])
    assert error.value.fix == "its files: config.json, pytorch_model.bin, special_tokens_map.json, vocab.txt"


def test_repository_without_weights() -> None:
    with pytest.raises(DownloadError, match="no weights servestack recognises"):
        select_files(listing("README.md", "config.json"))


@pytest.mark.parametrize(
    ("path", "quant"),
    [
        ("Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
        ("qwen2.5-coder-32b-instruct-q5_k_m.gguf", "Q5_K_M"),
        ("mistral-7b-instruct-v0.2.Q4_K_M.gguf", "Q4_K_M"),
        ("UD-Q4_K_XL/GLM-4.7-UD-Q4_K_XL-00001-of-00005.gguf", "Q4_K_XL"),
        ("Qwen3-8B-IQ4_XS.gguf", "IQ4_XS"),
        ("model-BF16.gguf", "BF16"),
        ("gpt-oss-20b-MXFP4.gguf", "MXFP4"),
        ("Qwen2-7B.gguf", None),
        ("model.gguf", None),
    ],
)
def test_quant_of(path: str, quant: str | None) -> None:
    assert quant_of(path) == quant

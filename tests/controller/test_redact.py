"""Masking secrets in text bound for the console: the instance's own secrets wherever they appear, and
anything shaped like a Hugging Face token or a servestack key secret, whoever's it is."""

from __future__ import annotations

from servestack.controller.redact import Redactor


def test_known_secrets_and_secret_shapes_are_masked_and_the_rest_is_left_alone() -> None:
    redact = Redactor.of(
        ["engine-api-key-123", None, "abc"],  # too short a value to mask everywhere: `abc` stays
        {"HF_TOKEN": "hf-style-but-custom-value", "PATH": "/usr/bin"},
        {"MY_SECRET": "s3cr3t-value"},
    )
    line = (
        "args: --api-key engine-api-key-123 token=hf-style-but-custom-value other=s3cr3t-value path=/usr/bin abc "
        "hf_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345 sk-ss-1aGrWzPSjfvuNFF2FcEtNX3mVLLw7NhCVfD"
    )
    masked = redact(line)
    for secret in ("engine-api-key-123", "hf-style-but-custom-value", "s3cr3t-value", "hf_ABCDEF", "sk-ss-1aG"):
        assert secret not in masked
    assert "path=/usr/bin abc" in masked
    assert redact.lines(["x engine-api-key-123", "y"]) == ["x ***", "y"]

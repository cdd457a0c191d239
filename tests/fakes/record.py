"""Shared by the fakes: append what a fake was called with to $FAKE_RECORD (JSON lines)."""

from __future__ import annotations

import json
import os
import re

RECORDED_ENV = re.compile(r"^(CUDA_|HF_|HUGGING|APPTAINERENV_|PYTHONUNBUFFERED|VLLM_|FAKE_ENV_)")


def record(tool: str, argv: list[str], **extra: object) -> None:
    path = os.environ.get("FAKE_RECORD")
    if not path:
        return
    env = {k: v for k, v in os.environ.items() if RECORDED_ENV.match(k)}
    with open(path, "a") as f:
        f.write(json.dumps({"tool": tool, "argv": argv, "env": env, **extra}) + "\n")

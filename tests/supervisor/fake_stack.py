"""A stack whose one service runs `fake_python.py` in place of llama.cpp (its env shapes how it dies)."""

from __future__ import annotations

from pathlib import Path

from servestack.stack import Stack, parse_stack

FAKE_PYTHON = Path(__file__).with_name("fake_python.py")


def stack_with_fake_engine(restart: str, env: dict[str, str]) -> Stack:
    env_yaml = "".join(f"\n      {k}: '{v}'" for k, v in env.items()) or " {}"
    text = (
        "services:\n  flaky:\n    engine: llamacpp\n    model: /nowhere/model.gguf\n"
        f"    restart: {restart}\n    runtime: {{python: {FAKE_PYTHON}}}\n    env:{env_yaml}\n"
    )
    return parse_stack(text, source="test", environ={})

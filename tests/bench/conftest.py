from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.bench.fake_openai import FakeOpenAI


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    """A fake OpenAI server (in a thread) that reports usage."""
    server = FakeOpenAI().start()
    yield server
    server.stop()

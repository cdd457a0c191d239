"""The supervisor with the real llama.cpp engine: a failure says why, with the log's last lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from servestack.errors import EngineError
from servestack.plan import make_plan
from servestack.settings import Settings
from servestack.stack import parse_stack
from servestack.supervisor import ReplicaStatus, StateStore, Supervisor

pytestmark = pytest.mark.anyio


async def test_engine_that_cannot_load_its_model_is_reported_with_its_log(tmp_path: Path) -> None:
    stack = parse_stack(
        f"services:\n  broken:\n    engine: llamacpp\n    model: {tmp_path}/missing.gguf\n",
        source="test",
        environ={},
    )
    settings = Settings(home=tmp_path / "home", ready_timeout=60)
    store = StateStore(settings.state_dir)
    async with Supervisor(store, settings) as supervisor:
        replica = supervisor.prepare(make_plan(stack).services["broken"])
        with pytest.raises(EngineError) as info:
            await supervisor.start(replica)
    assert "exited with code" in info.value.message
    assert any("missing.gguf" in line for line in info.value.log_tail)
    [state] = store.read_replicas()
    assert state.status is ReplicaStatus.FAILED
    assert state.last_error and "exited with code" in state.last_error

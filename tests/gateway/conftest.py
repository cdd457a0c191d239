from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from servestack.gateway import Endpoint, EndpointTable, Gateway, GatewayServer
from tests.gateway.fake_engine import FakeEngine, start_fake_engine


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Harness:
    url: str
    engine: FakeEngine
    table: EndpointTable


@pytest.fixture
async def gateway() -> AsyncIterator[Harness]:
    """The real gateway on a free port, in front of one fake engine serving `tiny` and `tiny-alias`."""
    engine = FakeEngine()
    runner, engine_url = await start_fake_engine(engine)
    table = EndpointTable()
    table.upsert(Endpoint(id="tiny.0", service="tiny", models=("tiny", "tiny-alias"), base_url=engine_url, ready=True))
    server = GatewayServer(Gateway(table), "127.0.0.1", 0)
    await server.start()
    try:
        yield Harness(url=server.url, engine=engine, table=table)
    finally:
        await server.stop()
        await runner.cleanup()

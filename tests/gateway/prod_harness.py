"""A production gateway (built from a `gateway:` section) on a free port, in front of a ProdEngine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from servestack.engines import ENGINES
from servestack.gateway import Endpoint, EndpointTable, Gateway, GatewayServer
from servestack.gateway.admission.keys import KeyStore
from servestack.gateway.edge.build import build_gateway
from servestack.gateway.telemetry.usage import UsageLedger
from servestack.settings import Settings
from servestack.stack import GatewayConfig
from tests.gateway.prod_engine import ENGINE_METRIC_NAMES, ProdEngine, start_engine

ADMIN_SECRET = "admin-test-secret-0123456789abcdef"


@dataclass
class ProdHarness:
    url: str
    engine: ProdEngine
    engine_url: str
    table: EndpointTable
    gateway: Gateway
    settings: Settings
    registry: CollectorRegistry

    def client(self, secret: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30, **kwargs)

    async def create_key(self, name: str, **options: Any) -> str:
        """A key made the way `servestack keys create` makes it (another connection), then loaded."""
        store = KeyStore(self.settings.keys_db)
        try:
            _, secret = store.create(name, **options)
        finally:
            store.close()
        await self.reload_keys()
        return secret

    async def revoke_key(self, name: str) -> None:
        store = KeyStore(self.settings.keys_db)
        try:
            store.revoke(name)
        finally:
            store.close()
        await self.reload_keys()

    async def reload_keys(self) -> None:
        assert self.gateway.pipeline is not None and self.gateway.pipeline.keys is not None
        await self.gateway.pipeline.keys.reload()


def engine_endpoint(name: str, url: str, engine: str) -> Endpoint:
    """A ready replica `NAME.0` of `engine` at `url`, with that engine's metric names and traits (as the
    controller passes them)."""
    adapter = ENGINES[engine]
    return Endpoint(
        id=f"{name}.0",
        service=name,
        models=(name,),
        base_url=url,
        ready=True,
        engine=engine,
        metrics_url=url + "/metrics",
        metric_names=ENGINE_METRIC_NAMES.get(engine, {}),
        dialect=adapter.dialect,
        native_routes=adapter.native_routes,
    )


@asynccontextmanager
async def production_gateway(
    home: Path,
    config: Mapping[str, Any] | None = None,
    *,
    engine: ProdEngine | None = None,
    engine_name: str = "vllm",
    tracer_provider: Any = None,
    admin_key: str | None = ADMIN_SECRET,
) -> AsyncIterator[ProdHarness]:
    """The gateway serving model `tiny` (engine `engine_name`); usage rows are committed every 50 ms."""
    engine = engine or ProdEngine()
    runner, engine_url = await start_engine(engine)
    table = EndpointTable()
    table.upsert(engine_endpoint("tiny", engine_url, engine_name))
    settings = Settings(home=home, admin_key=admin_key)
    gateway_config = GatewayConfig.model_validate({"usage": {"flush_interval": 0.05}, **(config or {})})
    registry = CollectorRegistry()
    gateway = build_gateway(table, gateway_config, settings, registry=registry, tracer_provider=tracer_provider)
    server = GatewayServer(
        gateway, "127.0.0.1", 0, timeouts=gateway_config.timeouts, head_cap=gateway_config.limits.max_header_bytes
    )
    await server.start()
    try:
        yield ProdHarness(server.url, engine, engine_url, table, gateway, settings, registry)
    finally:
        await server.stop()
        await runner.cleanup()


def ledger_rows(home: Path) -> list[dict[str, object]]:
    """The usage ledger's rows under `home`, oldest first (read from the file, as `servestack usage` reads it)."""
    ledger = UsageLedger(Settings(home=home).usage_db, readonly=True)
    try:
        return sorted(ledger.rows(), key=lambda r: int(r["id"]))  # type: ignore[call-overload]
    finally:
        ledger.db.close()

"""deploy/ stays true to the gateway: every metric the Grafana dashboard queries is one the gateway
exports, the config files parse, and the example stack file is a valid stack."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from servestack.stack import load_stack
from tests.gateway.prod_engine import SGLANG_METRICS, ProdEngine, start_engine
from tests.gateway.prod_harness import engine_endpoint, production_gateway

DEPLOY = Path(__file__).parents[2] / "deploy"


def dashboard_metrics() -> set[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "servestack.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs.append(dashboard["templating"]["list"][0]["query"]["query"])
    return {name for expr in exprs for name in re.findall(r"\bservestack_[a-z_]+", expr)}


@pytest.mark.anyio
async def test_dashboard_queries_only_metrics_the_gateway_exports(tmp_path: Path) -> None:
    queue = {"limits": {"queue": {"max_concurrent": 4}}}
    async with production_gateway(tmp_path / "home", queue) as gw, gw.client() as client:
        runner, url = await start_engine(ProdEngine(metrics_text=SGLANG_METRICS))
        gw.table.upsert(engine_endpoint("sg", url, "sglang"))
        await client.post("/v1/chat/completions", json={"model": "tiny", "messages": [], "stream": True})
        await gw.gateway.monitor.scrape_all()
        exposition = (await client.get("/metrics")).text
        await runner.cleanup()
    exported = {s.name for family in text_string_to_metric_families(exposition) for s in family.samples}
    assert dashboard_metrics() - exported == set()


def test_config_files_parse_and_the_example_stack_loads() -> None:
    for path in [*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")]:
        if path.name != "stack.example.yaml":
            assert isinstance(yaml.safe_load(path.read_text()), dict), path
    stack = load_stack(DEPLOY / "stack.example.yaml", environ={})
    assert stack.gateway.auth.enabled and stack.gateway.aliases == {"gpt-4o-mini": "smollm2"}
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert {"servestack", "prometheus", "grafana"} <= set(compose["services"])
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())["scrape_configs"][0]
    assert scrape["metrics_path"] == "/metrics" and scrape["authorization"]["type"] == "Bearer"

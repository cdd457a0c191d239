"""The console at /ui on a production gateway: the page is public, its data is not; browsers' `/` goes there
while API clients get Ollama's root; who may act; the traffic history from the gateway's own metrics."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from servestack.gateway.console.traffic import quantile
from tests.gateway.prod_harness import ADMIN_SECRET, production_gateway

pytestmark = pytest.mark.anyio

AUTH_ON = {"auth": {"enabled": True}}
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
READS = ["/admin/traffic", "/admin/actions", "/admin/overview", "/admin/plan", "/admin/logs?service=tiny"]


async def test_browsers_root_opens_the_console_and_api_clients_see_no_change(tmp_path: Path) -> None:
    async with production_gateway(tmp_path, AUTH_ON) as gw, gw.client() as anonymous, gw.client(ADMIN_SECRET) as admin:
        page = await anonymous.get("/", headers={"accept": "text/html,application/xhtml+xml"})
        assert page.status_code == 302 and page.headers["location"] == "/ui/"
        assert (await anonymous.get("/")).status_code == 401  # an API client without a key, as before
        assert (await admin.get("/")).text == "Ollama is running"
        index = await anonymous.get("/ui/")  # the page itself needs no key: it holds no data
        assert index.status_code == 200 and "servestack console" in index.text
        assert "default-src 'none'" in index.headers["content-security-policy"]
        assert "connect-src 'self'" in index.headers["content-security-policy"]
        script = await anonymous.get("/ui/main.js")
        assert script.headers["content-type"].startswith("text/javascript")
        assert (await anonymous.get("/ui")).headers["location"] == "/ui/"


async def test_with_auth_on_the_console_data_needs_the_admin_key(tmp_path: Path) -> None:
    async with production_gateway(tmp_path, AUTH_ON) as gw:
        client_secret = await gw.create_key("dave")
        async with gw.client() as anonymous, gw.client(client_secret) as dave, gw.client(ADMIN_SECRET) as admin:
            for path in READS:
                assert (await anonymous.get(path)).status_code == 401, path
                refused = await dave.get(path)
                assert refused.status_code == 403 and refused.json()["error"]["code"] == "admin_key_required", path
                # Past the key check; the instance's data is 404 here (no controller behind this gateway).
                assert (await admin.get(path)).status_code == (200 if path in READS[:2] else 404), path
            assert (await anonymous.get("/admin/console")).status_code == 401
            told = (await dave.get("/admin/console")).json()  # the page learns it must ask for the admin key
            assert not told["can_read"] and not told["can_act"] and not told["admin"]
            action = {"service": "tiny", "action": "restart"}
            assert (await anonymous.post("/admin/actions", json=action)).status_code == 401
            assert (await dave.post("/admin/actions", json=action)).status_code == 403
            session = (await admin.get("/admin/console")).json()
            assert session["admin"] and session["can_act"] and not session["instance"]
            # This gateway has no controller behind it: the admin is told so, not given an empty page.
            missing = await admin.post("/admin/actions", json=action)
            assert missing.status_code == 404 and "servestack up" in missing.json()["error"]["message"]


async def test_with_auth_off_anyone_reads_and_only_the_admin_key_acts(tmp_path: Path) -> None:
    async with production_gateway(tmp_path) as gw, gw.client() as anonymous:
        session = (await anonymous.get("/admin/console")).json()
        assert session["can_read"] and not session["can_act"] and not session["admin"]
        assert (await anonymous.get("/admin/traffic")).status_code == 200
        refused = await anonymous.post("/admin/actions", json={"service": "tiny", "action": "stop"})
        assert refused.status_code == 401 and "admin key" in refused.json()["error"]["message"]


async def test_localhost_actions_need_this_machine_and_the_console_own_origin(tmp_path: Path) -> None:
    config = {"console": {"actions": "localhost"}}
    action = {"service": "tiny", "action": "restart"}
    async with production_gateway(tmp_path, config) as gw, gw.client() as local:
        assert (await local.get("/admin/console")).json()["can_act"]
        # Allowed through (then 404: no controller behind this gateway), from this machine's own page.
        own = gw.url.removeprefix("http://")
        allowed = await local.post("/admin/actions", json=action, headers={"origin": gw.url})
        assert allowed.status_code == 404, allowed.text
        other_site = await local.post("/admin/actions", json=action, headers={"origin": "http://evil.example"})
        assert other_site.status_code == 403 and "another site" in other_site.json()["error"]["message"]
        # A name that resolves here but is not a loopback name (DNS rebinding) is not "this machine".
        rebound = await local.post("/admin/actions", json=action, headers={"host": "evil.example:80"})
        assert rebound.status_code == 401
        assert own.startswith("127.0.0.1:")


async def test_traffic_history_follows_the_gateways_own_metrics(tmp_path: Path) -> None:
    async with production_gateway(tmp_path) as gw, gw.client() as client:
        for _ in range(6):
            assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
        assert (await client.post("/v1/chat/completions", json={**CHAT, "model": "nope"})).status_code == 404
        deadline = time.monotonic() + 10
        point: dict[str, object] = {}
        while time.monotonic() < deadline:
            points = (await client.get("/admin/traffic")).json()["points"]
            busy = [p for p in points if p["models"].get("tiny", {}).get("requests_per_s", 0) > 0]
            if busy:
                point = busy[-1]["models"]["tiny"]
                break
            await asyncio.sleep(0.3)
        assert point, "no traffic point counted the requests"
        assert point["requests_per_s"] > 0 and point["completion_tokens_per_s"] > 0
        ttft = point["ttft"]
        assert isinstance(ttft, dict) and 0 < ttft["p50"] <= ttft["p95"] <= ttft["p99"]
        after = (await client.get("/admin/traffic", params={"since": points[-1]["seq"]})).json()
        assert all(p["seq"] > points[-1]["seq"] for p in after["points"])
        bad = await client.get("/admin/traffic", params={"since": "soon"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "since"


def test_quantile_interpolates_within_its_bucket_as_prometheus_does() -> None:
    buckets = [(0.1, 10.0), (0.5, 30.0), (1.0, 40.0), (float("inf"), 40.0)]
    assert quantile(0.25, buckets) == pytest.approx(0.1 * 10 / 10)  # rank 10: the top of the first bucket
    assert quantile(0.5, buckets) == pytest.approx(0.1 + 0.4 * (20 - 10) / 20)
    assert quantile(0.99, buckets) == pytest.approx(0.5 + 0.5 * (39.6 - 30) / 10)
    assert quantile(0.99, [(0.1, 0.0), (float("inf"), 5.0)]) == 0.1  # in +Inf: the largest finite bound

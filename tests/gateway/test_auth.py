"""Keys: 401 without one, 403 for a model the key may not use, 401 once revoked or expired, admin
routes only with the admin key; and no secret in any log line or database file afterwards."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from tests.gateway.prod_harness import ADMIN_SECRET, production_gateway

pytestmark = pytest.mark.anyio

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
AUTH_ON = {"auth": {"enabled": True}, "logs": {"format": "json"}}


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def files_containing(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


async def test_keys_guard_every_route_but_health(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    home = tmp_path / "home"
    secrets: list[str] = [ADMIN_SECRET]
    async with production_gateway(home, AUTH_ON) as gw:
        secret = await gw.create_key("alice", models=["tiny"])
        other = await gw.create_key("bob", models=["something-else"])
        secrets += [secret, other]
        async with gw.client() as anonymous, gw.client(secret) as alice, gw.client(other) as bob:
            assert (await anonymous.get("/health")).status_code == 200
            for method, path in [("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("GET", "/metrics")]:
                assert_error(await anonymous.request(method, path, json=CHAT), 401, "invalid_api_key")
            ollama = await anonymous.get("/api/tags")
            assert ollama.status_code == 401 and set(ollama.json()) == {"error"}  # Ollama's error shape

            wrong = await anonymous.post("/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-ss-x"})
            assert_error(wrong, 401, "invalid_api_key")
            assert "sk-ss-x" not in wrong.text

            assert (await alice.post("/v1/chat/completions", json=CHAT)).status_code == 200
            assert [m["id"] for m in (await bob.get("/v1/models")).json()["data"]] == []  # keys see their models
            assert [m["id"] for m in (await alice.get("/v1/models")).json()["data"]] == ["tiny"]
            by_header = await anonymous.post("/v1/chat/completions", json=CHAT, headers={"x-api-key": secret})
            assert by_header.status_code == 200
            assert_error(await bob.post("/v1/chat/completions", json=CHAT), 403, "model_not_allowed")
            assert (await bob.get("/metrics")).status_code == 200  # any key may read metrics

            await gw.revoke_key("alice")
            assert_error(await alice.post("/v1/chat/completions", json=CHAT), 401, "invalid_api_key")
        assert gw.engine.headers and all("authorization" not in h and "x-api-key" not in h for h in gw.engine.headers)
    for secret in secrets:  # the gateway has stopped: logs flushed, ledger written
        assert files_containing(home, secret) == []
        assert secret not in caplog.text
    lines = [json.loads(line) for line in (home / "logs" / "gateway.jsonl").read_text().splitlines()]
    statuses = sorted(line["status"] for line in lines if line["event"] == "request")
    assert statuses == [200, 200, 401, 401, 401, 401, 401, 401, 403]  # generation requests and refusals
    assert all(line.get("request_id") for line in lines if line.get("status") in (200, 403))


async def test_keys_made_in_another_process_are_picked_up_within_a_second(tmp_path: Path) -> None:
    async with production_gateway(tmp_path / "home", AUTH_ON) as gw:
        from servestack.gateway.admission.keys import KeyStore

        store = KeyStore(gw.settings.keys_db)
        _, secret = store.create("carol")
        async with gw.client(secret) as carol:
            deadline = time.monotonic() + 3
            while (await carol.get("/v1/models")).status_code == 401:
                assert time.monotonic() < deadline, "the new key was not loaded"
                await asyncio.sleep(0.1)
            store.revoke("carol")
            store.close()
            deadline = time.monotonic() + 3
            while (await carol.get("/v1/models")).status_code == 200:
                assert time.monotonic() < deadline, "the revoked key still works"
                await asyncio.sleep(0.1)


async def test_expired_key_is_401(tmp_path: Path) -> None:
    async with production_gateway(tmp_path / "home", AUTH_ON) as gw:
        secret = await gw.create_key("old", expires_at=time.time() + 0.3)
        async with gw.client(secret) as old:
            assert (await old.get("/v1/models")).status_code == 200
            await asyncio.sleep(0.4)
            response = await old.get("/v1/models")
    assert_error(response, 401, "invalid_api_key")
    assert "expired" in response.json()["error"]["message"]


async def test_admin_routes_need_the_admin_key(tmp_path: Path) -> None:
    async with production_gateway(tmp_path / "home", AUTH_ON) as gw:
        client_secret = await gw.create_key("dave")
        async with gw.client() as anonymous, gw.client(client_secret) as dave, gw.client(ADMIN_SECRET) as admin:
            assert_error(await anonymous.get("/admin/keys"), 401, "invalid_api_key")
            assert_error(await dave.get("/admin/keys"), 403, "admin_key_required")

            created = await admin.post("/admin/keys", json={"name": "erin", "models": ["tiny"], "rpm": 10})
            assert created.status_code == 201
            erin_secret = created.json()["secret"]
            assert erin_secret.startswith("sk-ss-")
            listed = (await admin.get("/admin/keys")).json()["keys"]
            assert {k["name"] for k in listed} == {"dave", "erin"}
            assert erin_secret not in str(listed) and all(set(k) >= {"id", "hint", "status"} for k in listed)

            async with gw.client(erin_secret) as erin:
                assert (await erin.post("/v1/chat/completions", json=CHAT)).status_code == 200  # at once
                assert (await admin.post("/admin/keys/revoke", json={"key": "erin"})).status_code == 200
                assert (await erin.post("/v1/chat/completions", json=CHAT)).status_code == 401
            assert (await admin.post("/v1/chat/completions", json=CHAT)).status_code == 200  # admin may call too

            await asyncio.sleep(0.2)  # let the ledger commit
            usage = (await admin.get("/admin/usage", params={"by": "key"})).json()
            assert {t["group"]: t["requests"] for t in usage["totals"]} == {"admin": 1, "erin": 1}
            assert (await admin.post("/admin/keys/reload")).json() == {"status": "reloaded"}


async def test_without_auth_keys_are_optional_but_recognised(tmp_path: Path) -> None:
    async with production_gateway(tmp_path / "home", {"auth": {"enabled": False}}) as gw:
        secret = await gw.create_key("frank", models=["other"])
        async with gw.client("whatever-an-sdk-sends") as sdk, gw.client(secret) as frank:
            assert (await sdk.post("/v1/chat/completions", json=CHAT)).status_code == 200
            assert (await frank.post("/v1/chat/completions", json=CHAT)).status_code == 403

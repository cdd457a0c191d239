"""No request gets a 500 from a slip: admin routes answer bad input with 400/403/404, JSON too deep for
the gateway to re-encode is refused, and an unexpected exception is answered in the API's shape."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from servestack.asgi import Receive, Scope, Send
from servestack.gateway import EndpointTable, Gateway, GatewayServer
from tests.gateway.prod_harness import ADMIN_SECRET, production_gateway

pytestmark = pytest.mark.anyio


def openai_error(response: httpx.Response, status: int, code: str, param: str | None = None) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code and error["param"] == param
    return str(error["message"])


async def test_admin_routes_answer_bad_input_with_openai_errors(tmp_path: Path) -> None:
    async with production_gateway(tmp_path / "home") as gw, gw.client(ADMIN_SECRET) as admin:
        message = openai_error(await admin.post("/admin/keys/revoke", json={"key": "nobody"}), 404, "not_found", "key")
        assert "nobody" in message and "keys list" in message
        openai_error(await admin.post("/admin/keys/revoke", json={"key": 7}), 400, "invalid_request", "key")
        openai_error(await admin.post("/admin/keys/revoke", content=b"[1]"), 400, "invalid_request")
        openai_error(await admin.post("/admin/keys/revoke", content=b"{nope"), 400, "invalid_request")
        assert (await admin.post("/admin/keys", json={"name": "eve"})).status_code == 201
        message = openai_error(await admin.post("/admin/keys", json={"name": "eve"}), 400, "invalid_request", "name")
        assert "exists" in message
        for field, value in [("rpm", 2**70), ("tpm", -1), ("max_concurrent", True), ("expires_at", True)]:
            response = await admin.post("/admin/keys", json={"name": f"k-{field}", field: value})
            openai_error(response, 400, "invalid_request", field)
        openai_error(await admin.get("/admin/usage", params={"since": "nan"}), 400, "invalid_request", "since")
        openai_error(await admin.get("/admin/usage", params={"by": "day"}), 400, "invalid_request", "by")


async def test_json_too_deep_to_re_encode_is_a_400_on_every_path_that_re_encodes(tmp_path: Path) -> None:
    deep: Any = "x"
    for _ in range(300):  # orjson reads up to 1,024 levels but writes only 255
        deep = [deep]
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "extra": deep}
    async with production_gateway(tmp_path / "home", {"aliases": {"gpt-4o-mini": "tiny"}}) as gw, gw.client() as client:
        alias = await client.post("/v1/chat/completions", json=chat)
        stream = await client.post("/v1/chat/completions", json={**chat, "model": "tiny", "stream": True})
        ollama = await client.post("/api/chat", json={"model": "tiny", "messages": [], "tools": [deep]})
        shallow = await client.post("/v1/chat/completions", json={**chat, "extra": [[["fine"]]]})
    for response in (alias, stream):
        assert "deeper than 128" in openai_error(response, 400, "invalid_request")
    assert ollama.status_code == 400 and "deeper than 128" in ollama.json()["error"]
    assert shallow.status_code == 200
    assert len(gw.engine.received) == 1


async def boom(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("a bug")


async def test_an_unexpected_exception_is_logged_and_answered_in_the_apis_shape(
    caplog: pytest.LogCaptureFixture,
) -> None:
    routes = {("GET", "/v1/boom"): boom, ("GET", "/api/boom"): boom}
    server = GatewayServer(Gateway(EndpointTable(), routes=routes), "127.0.0.1", 0)
    await server.start()
    try:
        with caplog.at_level(logging.ERROR, "servestack.gateway"):
            async with httpx.AsyncClient(base_url=server.url) as client:
                openai = await client.get("/v1/boom")
                ollama = await client.get("/api/boom")
    finally:
        await server.stop()
    assert "see its log" in openai_error(openai, 500, "internal_error")
    assert ollama.status_code == 500 and set(ollama.json()) == {"error"}
    assert "RuntimeError: a bug" in caplog.text  # the traceback is in the gateway's log, not in the answer
    assert "a bug" not in openai.text


async def test_ollama_tool_calls_that_are_not_objects_are_a_400(tmp_path: Path) -> None:
    statuses = []
    async with production_gateway(tmp_path / "home") as gw, gw.client() as client:
        for calls in ([1], [{"function": "f"}], [{"function": {"name": "f", "arguments": {"x": 1}}}]):
            message = {"role": "assistant", "content": "", "tool_calls": calls}
            response = await client.post("/api/chat", json={"model": "tiny", "messages": [message], "stream": False})
            statuses.append(response.status_code)
    assert statuses == [400, 400, 200]
    [sent] = gw.engine.received
    assert sent["messages"][0]["tool_calls"][0]["function"]["arguments"] == '{"x":1}'  # type: ignore[index]

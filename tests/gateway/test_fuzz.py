"""Generated requests on every route of a real gateway (`servestack up`, a simulated engine, the admin
API on): random JSON bodies (deep nesting, wrong types for every field, huge numbers, odd text), bytes
that are not JSON or not UTF-8, random headers. Every answer must be a well-formed success or a
well-formed error in the route's API shape, never a 500 from an unexpected exception, and the
gateway's log must hold no traceback afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import free_port

ADMIN = "fuzz-admin-secret-0123456789"
STACK = """
version: 1
gateway:
  aliases: {gpt-4o-mini: chat}
services:
  chat:
    engine: sim
    model: sim
    context_length: 4096
    args: ["--instant"]
"""
ROUTES = [
    ("POST", "/v1/chat/completions"), ("POST", "/v1/completions"), ("POST", "/v1/embeddings"), ("GET", "/v1/models"),
    ("POST", "/api/chat"), ("POST", "/api/generate"), ("POST", "/api/embed"), ("POST", "/api/embeddings"),
    ("POST", "/api/show"), ("GET", "/api/tags"), ("GET", "/api/ps"), ("GET", "/api/version"), ("GET", "/"),
    ("POST", "/generate"), ("GET", "/health"), ("GET", "/metrics"),
    ("GET", "/admin/keys"), ("POST", "/admin/keys"), ("POST", "/admin/keys/revoke"), ("POST", "/admin/keys/reload"),
    ("GET", "/admin/usage"), ("DELETE", "/v1/chat/completions"), ("POST", "/v1/nothing"),
]  # fmt: skip
FIELDS = [
    "model", "messages", "prompt", "stream", "max_tokens", "max_completion_tokens", "stream_options", "input",
    "text", "input_ids", "sampling_params", "options", "format", "tools", "images", "system", "raw", "suffix",
    "name", "key", "models", "rpm", "tpm", "max_concurrent", "expires_at", "dimensions", "temperature",
]  # fmt: skip
# Keys found inside those fields (messages, options, tool calls): nested objects get them too.
INNER = ["role", "content", "tool_calls", "function", "arguments", "tool_call_id", "num_predict", "include_usage",
         "type", "text", "index", "max_new_tokens", "seed", "stop"]  # fmt: skip
VALID = {
    "/v1/chat/completions": {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
    "/v1/completions": {"model": "gpt-4o-mini", "prompt": "hi", "max_tokens": 4},
    "/v1/embeddings": {"model": "chat", "input": "hi"},
    "/api/chat": {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": 4}},
    "/api/generate": {"model": "chat:latest", "prompt": "hi", "stream": False, "options": {"num_predict": 4}},
    "/api/embed": {"model": "chat", "input": ["hi"]},
    "/api/show": {"model": "chat"},
    "/generate": {"model": "chat", "text": "hi", "sampling_params": {"max_new_tokens": 4}},
    "/admin/keys": {"name": "k", "models": ["chat"], "rpm": 10},
    "/admin/keys/revoke": {"key": "k"},
}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
    st.sampled_from(["chat", "gpt-4o-mini", "chat:latest", "", "user", "assistant", "tool", "json", "\x00", "🦙"]),
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(FIELDS + INNER) | st.text(max_size=8), children, max_size=4),
    ),
    max_leaves=20,
)


@st.composite
def bodies(draw: st.DrawFn, path: str) -> bytes:
    kind = draw(st.sampled_from(["mutated", "mutated", "json", "deep", "bytes", "empty"]))
    if kind == "mutated":  # a valid request with fields (and fields of its first message) replaced by anything
        body = json.loads(json.dumps(VALID.get(path, {})))
        for field in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
            body[field] = draw(json_values)
        messages = body.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[0], dict):
            for key in draw(st.lists(st.sampled_from(INNER), max_size=3)):
                messages[0][key] = draw(json_values | st.lists(json_values, min_size=1, max_size=3))
        return json.dumps(body).encode()
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "deep":
        depth = draw(st.integers(min_value=100, max_value=1100))
        body = {
            **VALID.get(path, {}),
            "stream": draw(st.booleans()),
            "model": draw(st.sampled_from(["chat", "gpt-4o-mini"])),
        }
        field = draw(st.sampled_from(FIELDS))
        return json.dumps({**body, field: "INNER"}).encode().replace(b'"INNER"', b"[" * depth + b"]" * depth)
    if kind == "bytes":
        return draw(st.binary(max_size=200)) + b"\xff\xfe"
    return b""


FRAMING = {"content-length", "transfer-encoding", "host", "connection", "expect", "upgrade", "te", "trailer"}
header_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20).filter(
    lambda name: name not in FRAMING  # the client library owns the message framing
)
latin1 = st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f")
header_values = st.text(alphabet=latin1, max_size=60).map(lambda v: v.strip(" \t").encode("latin-1"))


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, bytes, dict[str, bytes]]:
    method, path = draw(st.sampled_from(ROUTES) | st.sampled_from([(m, p) for m, p in ROUTES if p in VALID]))
    headers = draw(st.dictionaries(header_names, header_values, max_size=4))
    auth = draw(st.sampled_from([None, f"Bearer {ADMIN}", "Bearer sk-ss-nope", "Basic x", "Bearer"]))
    if auth is not None:
        headers["authorization"] = auth.encode()
    headers["content-type"] = draw(st.sampled_from([b"application/json", b"text/plain", b"application/x-www-form"]))
    if draw(st.integers(0, 30)) == 0:
        headers["x-huge"] = b"h" * 70_000  # past the request-head cap
    return method, path, draw(bodies(path)), headers


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "stack.yaml").write_text(STACK)
    port = free_port()
    env = {**os.environ, "SERVESTACK_HOME": str(tmp / "home"), "SERVESTACK_ADMIN_KEY": ADMIN}
    log_path = tmp / "up.log"
    with log_path.open("w") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "servestack", "up", "-f", str(tmp / "stack.yaml"), "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while not _ready(url):
                assert up.poll() is None and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.2)
            yield url, log_path
        finally:
            up.send_signal(signal.SIGINT)
            up.wait(timeout=60)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def check(method: str, path: str, response: httpx.Response) -> None:
    where = f"{method} {path} → {response.status_code}: {response.content[:300]!r}"
    assert response.status_code != 500, where
    assert 200 <= response.status_code < 600, where
    if response.status_code < 400:
        return
    error: Any = json.loads(response.content)["error"]  # JSON, whatever went wrong
    if path.startswith("/api/"):
        assert isinstance(error, str) and error, where
    else:
        assert set(error) == {"message", "type", "param", "code"} and error["message"], where


@settings(max_examples=600, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=requests())
def test_no_generated_request_gets_a_500_or_a_malformed_answer(
    gateway: tuple[str, Path], request: tuple[str, str, bytes, dict[str, bytes]]
) -> None:
    url, _ = gateway
    method, path, body, headers = request
    with httpx.Client(base_url=url, timeout=30) as client:
        response = client.request(method, path, content=body, headers=headers)
    check(method, path, response)


def test_the_gateway_logged_no_traceback(gateway: tuple[str, Path]) -> None:
    _, log = gateway
    assert "Traceback" not in log.read_text()

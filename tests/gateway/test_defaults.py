"""A service's `defaults:` at the gateway: given to requests that omit them, on both APIs, and nowhere else."""

from __future__ import annotations

from pathlib import Path

import ollama
import pytest

from servestack.gateway.fleet.endpoint import Endpoint
from servestack.gateway.fleet.pool import Pool
from servestack.gateway.fleet.routing import RoundRobin
from servestack.gateway.openai.attempt import prepare_attempt
from servestack.gateway.openai.conform import CHAT, COMPLETIONS, EMBEDDINGS
from servestack.gateway.openai.defaults import apply_defaults, ollama_parameters
from servestack.gateway.relay.exchange import Exchange
from servestack.stack import RequestDefaults
from tests.gateway.prod_harness import engine_endpoint, production_gateway

DEFAULTS = {"temperature": 0.7, "top_p": 0.9, "max_tokens": 2048}
MESSAGES = [{"role": "user", "content": "hi"}]


def test_only_what_the_request_omits_is_filled_in() -> None:
    request = {"model": "m", "messages": MESSAGES, "temperature": 0.1, "top_p": None}

    sent = apply_defaults(request, DEFAULTS, CHAT)

    assert sent == {**request, "temperature": 0.1, "top_p": 0.9, "max_tokens": 2048}
    assert request["top_p"] is None  # the client's request is not changed
    assert apply_defaults({"max_completion_tokens": 5}, DEFAULTS, CHAT)["max_completion_tokens"] == 5
    assert "max_tokens" not in apply_defaults({"max_completion_tokens": 5}, DEFAULTS, CHAT)
    assert apply_defaults({"prompt": "x"}, DEFAULTS, COMPLETIONS)["temperature"] == 0.7


def test_without_defaults_or_on_embeddings_the_request_itself_goes() -> None:
    request = {"model": "m", "input": "x"}
    assert apply_defaults(request, DEFAULTS, EMBEDDINGS) is request
    assert apply_defaults(request, {}, CHAT) is request
    everything = {"model": "m", "messages": MESSAGES, **DEFAULTS}
    assert apply_defaults(everything, DEFAULTS, CHAT) is everything


def test_the_client_bytes_go_untouched_to_a_replica_without_defaults() -> None:
    body = b'{"model": "m",   "messages": [{"role": "user", "content": "hi"}]}'
    payload = {"model": "m", "messages": MESSAGES}
    exchange = Exchange(path=CHAT, pool=Pool("m", RoundRobin()), stream=False, body=body, payload=payload, headers=[])
    prepare_attempt(exchange, Endpoint("m.0", "m", ("m",), "http://x", ready=True), count_tokens=False)
    assert exchange.body is body
    defaulted = Endpoint("m.0", "m", ("m",), "http://x", ready=True, defaults=DEFAULTS)
    prepare_attempt(exchange, defaulted, count_tokens=False)
    assert b'"max_tokens":2048' in exchange.body


def test_the_stack_key_validates_and_lists_in_ollamas_names() -> None:
    defaults = RequestDefaults.model_validate({"temperature": 0.7, "max_tokens": 2048, "stop": "END"})
    assert defaults.as_request() == {"temperature": 0.7, "max_tokens": 2048, "stop": ["END"]}
    assert ollama_parameters(defaults.as_request()) == [
        ("temperature", "0.7"),
        ("num_predict", "2048"),
        ("stop", '"END"'),
    ]
    with pytest.raises(ValueError, match="less than or equal to 2"):
        RequestDefaults.model_validate({"temperature": 3})


@pytest.mark.anyio
async def test_the_engine_gets_the_defaults_on_both_apis(tmp_path: Path) -> None:
    async with production_gateway(tmp_path / "home") as gw:
        endpoint = engine_endpoint("tiny", gw.engine_url, "vllm")
        endpoint.defaults = DEFAULTS
        gw.table.upsert(endpoint)
        async with gw.client() as http:
            await http.post("/v1/chat/completions", json={"model": "tiny", "messages": MESSAGES, "temperature": 0})
            listed = (await http.get("/v1/models")).json()["data"]
        await ollama.AsyncClient(host=gw.url).chat(model="tiny", messages=MESSAGES, options={"num_predict": 3})

    openai_sent, ollama_sent = gw.engine.received[-2:]
    assert (openai_sent["temperature"], openai_sent["top_p"], openai_sent["max_tokens"]) == (0, 0.9, 2048)
    assert (ollama_sent["temperature"], ollama_sent["max_tokens"]) == (0.7, 3)
    assert listed == [{"id": "tiny", "object": "model", "created": listed[0]["created"], "owned_by": "servestack",
                       "defaults": DEFAULTS}]  # fmt: skip

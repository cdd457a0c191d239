"""vLLM's API surface, read by the official openai client: answers, streams, usage, errors."""

from __future__ import annotations

import httpx
import openai
import pytest
from simtools import ThreadedSim

FAST = {"time_scale": 0.001, "models": ("sim", "sim-alias")}
HELLO = [{"role": "user", "content": "hello there, how are you?"}]


@pytest.fixture
def sim(start_sim) -> ThreadedSim:  # type: ignore[no-untyped-def]
    return start_sim(**FAST)


def test_chat_completion_with_usage_and_replica(sim: ThreadedSim) -> None:
    client = sim.client()
    raw = client.chat.completions.with_raw_response.create(model="sim", messages=HELLO, max_tokens=7)
    answer = raw.parse()
    assert raw.headers["x-sim-replica"] == sim.server.app.replica == f"127.0.0.1:{sim.server.port}"
    assert answer.system_fingerprint == f"sim:{sim.server.app.replica}"
    assert answer.object == "chat.completion"
    assert answer.choices[0].message.role == "assistant"
    assert len(answer.choices[0].message.content.split()) == 7
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage is not None and answer.usage.completion_tokens == 7
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + 7
    assert answer.usage.prompt_tokens_details is not None
    assert answer.usage.prompt_tokens_details.cached_tokens == 0


def test_repeated_prompt_reports_cached_tokens(sim: ThreadedSim) -> None:
    client = sim.client()
    first = client.chat.completions.create(model="sim", messages=HELLO, max_tokens=2)
    second = client.chat.completions.create(model="sim-alias", messages=HELLO, max_tokens=2)
    assert first.usage and second.usage and second.usage.prompt_tokens_details
    assert second.usage.prompt_tokens_details.cached_tokens == first.usage.prompt_tokens - 1
    assert second.model == "sim-alias"


def test_the_next_turn_of_a_conversation_finds_the_last_one_cached(sim: ThreadedSim) -> None:
    client = sim.client()
    first = client.chat.completions.create(model="sim", messages=HELLO, max_tokens=12)
    history = [*HELLO, {"role": "assistant", "content": first.choices[0].message.content}]
    second = client.chat.completions.create(
        model="sim", messages=[*history, {"role": "user", "content": "go on"}], max_tokens=2
    )
    assert first.usage and second.usage and second.usage.prompt_tokens_details
    # The whole first turn is cached but for two pieces that tokenize differently once text follows
    # them: the prompt's final newline joins the answer's first word, the answer's last word joins
    # the end-of-message marker (a real BPE tokenizer has the same seams).
    assert second.usage.prompt_tokens_details.cached_tokens == first.usage.total_tokens - 2


def test_no_max_tokens_means_the_default_length_and_stop(sim: ThreadedSim) -> None:
    answer = sim.client().chat.completions.create(model="sim", messages=HELLO)
    assert answer.usage and answer.usage.completion_tokens == 16
    assert answer.choices[0].finish_reason == "stop"


def test_chat_stream_parses_with_the_openai_client(sim: ThreadedSim) -> None:
    stream = sim.client().chat.completions.create(
        model="sim", messages=HELLO, max_tokens=5, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 5
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length" and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5
    assert all(c.usage is None for c in chunks[:-1])
    assert {c.id for c in chunks} == {chunks[0].id}


def test_stream_without_include_usage_has_no_usage_chunk(sim: ThreadedSim) -> None:
    chunks = list(sim.client().chat.completions.create(model="sim", messages=HELLO, max_tokens=3, stream=True))
    assert all(c.choices and c.usage is None for c in chunks)


def test_raw_sse_framing_ends_with_done(sim: ThreadedSim) -> None:
    body = {"model": "sim", "prompt": "Once upon a time", "max_tokens": 4, "stream": True}
    with httpx.stream("POST", sim.url + "/v1/completions", json=body, timeout=10) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        raw = resp.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    assert all(e.startswith("data: {") for e in events[:-2])
    assert len(events[:-2]) == 4


def test_completions_whole_and_streamed(sim: ThreadedSim) -> None:
    client = sim.client()
    answer = client.completions.create(model="sim", prompt="Once upon a time", max_tokens=6)
    assert answer.object == "text_completion"
    assert answer.choices[0].text.startswith(" ") and len(answer.choices[0].text.split()) == 6
    assert answer.usage and answer.usage.completion_tokens == 6
    chunks = list(client.completions.create(model="sim", prompt="Once upon a time", max_tokens=6, stream=True))
    assert len("".join(c.choices[0].text for c in chunks).split()) == 6


def test_completion_with_token_ids_uses_them_as_the_prompt(sim: ThreadedSim) -> None:
    client = sim.client()
    client.completions.create(model="sim", prompt=list(range(100)), max_tokens=1)
    answer = client.completions.create(model="sim", prompt=[*range(80), 5, 5, 5], max_tokens=1)
    assert answer.usage and answer.usage.prompt_tokens == 83
    assert answer.usage.prompt_tokens_details and answer.usage.prompt_tokens_details.cached_tokens == 80


def test_models_lists_every_served_name(sim: ThreadedSim) -> None:
    models = sim.client().models.list()
    assert [m.id for m in models.data] == ["sim", "sim-alias"]


def test_unknown_model_is_a_404_in_openai_shape(sim: ThreadedSim) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        sim.client().chat.completions.create(model="nope", messages=HELLO)
    assert err.value.body == {
        "message": "The model `nope` does not exist.", "type": "invalid_request_error", "param": "model",
        "code": "model_not_found",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "sim", "messages": []}, "messages"),
        ({"model": "sim", "messages": HELLO, "max_tokens": 0}, "max_tokens"),
        ({"model": "sim", "messages": HELLO, "n": 2}, "n"),
        ({"model": "sim", "messages": HELLO, "max_tokens": 40_000}, "max_tokens"),  # beyond max_model_len
    ],
)
def test_bad_requests_are_400_with_the_parameter(sim: ThreadedSim, body: dict[str, object], param: str) -> None:
    resp = httpx.post(sim.url + "/v1/chat/completions", json=body, timeout=5)
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == param
    assert resp.headers["x-sim-replica"] == sim.server.app.replica


def test_health_version_and_unknown_routes(sim: ThreadedSim) -> None:
    assert httpx.get(sim.url + "/health").status_code == 200
    assert httpx.get(sim.url + "/version").json()["version"].startswith("servestack-sim")
    assert httpx.get(sim.url + "/nope").status_code == 404
    assert httpx.get(sim.url + "/v1/chat/completions").status_code == 405


def test_instant_mode_answers_at_once_whatever_the_latency_model(start_sim) -> None:  # type: ignore[no-untyped-def]
    sim = start_sim(instant=True, decode_rate=0.001, prefill_rate=0.001)  # would take hours if simulated
    client = sim.client(timeout=5)
    answer = client.chat.completions.create(model="sim", messages=HELLO, max_tokens=300)
    assert answer.usage and answer.usage.completion_tokens == 300 and answer.usage.prompt_tokens > 0
    chunks = list(
        client.chat.completions.create(
            model="sim", messages=HELLO, max_tokens=50, stream=True, stream_options={"include_usage": True}
        )
    )
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 50
    assert chunks[-1].usage is not None

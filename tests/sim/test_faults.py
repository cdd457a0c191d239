"""Fault injection: error answers, crashes, hangs, slow starts and warm-ups, and switching faults at run time."""

from __future__ import annotations

import random
import socket
import time

import httpx
import openai
import pytest
from simtools import ThreadedSim, scrape

from servestack.errors import BadRequest
from servestack.sim import CRASH_EXIT_CODE
from servestack.sim.faults import FaultAction, FaultInjector, Faults

HELLO = [{"role": "user", "content": "hello"}]
CHAT = {"model": "sim", "messages": HELLO, "max_tokens": 2}


def test_error_rate_one_answers_500_with_an_openai_error_body(start_sim) -> None:  # type: ignore[no-untyped-def]
    sim = start_sim(error_rate=1.0, time_scale=0.001)
    with pytest.raises(openai.InternalServerError) as err:
        sim.client().chat.completions.create(model="sim", messages=HELLO)
    assert err.value.status_code == 500
    body = err.value.body
    assert isinstance(body, dict) and set(body) == {"message", "type", "param", "code"}
    assert body["type"] == "server_error" and "simulated engine failure" in body["message"]
    stream = httpx.post(sim.url + "/v1/chat/completions", json={**CHAT, "stream": True}, timeout=5)
    assert stream.status_code == 500 and stream.headers["content-type"] == "application/json"  # before any byte
    assert stream.headers["x-sim-replica"] == sim.server.app.replica


def test_error_rate_is_a_seeded_fraction(start_sim) -> None:  # type: ignore[no-untyped-def]
    runs = []
    for _ in range(2):
        sim = start_sim(error_rate=0.25, seed=3, instant=True)
        with httpx.Client(timeout=5) as http:
            runs.append([http.post(sim.url + "/v1/chat/completions", json=CHAT).status_code for _ in range(300)])
    assert runs[0] == runs[1]  # same seed, same failures
    assert set(runs[0]) == {200, 500}
    assert 0.15 < runs[0].count(500) / 300 < 0.35


def test_crash_after_requests_serves_n_then_exits_hard(sim_process) -> None:  # type: ignore[no-untyped-def]
    sim = sim_process("--crash-after-requests", "3", "--instant")
    sim.wait_listening()
    with httpx.Client(timeout=5) as http:
        for _ in range(3):
            assert http.post(sim.url + "/v1/chat/completions", json=CHAT).status_code == 200
        assert http.get(sim.url + "/health").status_code == 200  # only generation requests count
        with pytest.raises(httpx.TransportError):
            http.post(sim.url + "/v1/chat/completions", json=CHAT)
    assert sim.proc.wait(5) == CRASH_EXIT_CODE
    assert "crashing on purpose (crash_after_requests=3)" in sim.output()


def test_crash_after_seconds_cuts_open_streams(sim_process) -> None:  # type: ignore[no-untyped-def]
    sim = sim_process("--crash-after-seconds", "0.8", "--decode-rate", "5")
    sim.wait_listening()
    body = {**CHAT, "max_tokens": 100, "stream": True}
    started = time.monotonic()
    with pytest.raises(httpx.TransportError), httpx.stream("POST", sim.url + "/v1/chat/completions", json=body) as resp:
        for _ in resp.iter_raw():
            pass
    assert sim.proc.wait(5) == CRASH_EXIT_CODE
    assert time.monotonic() - started < 5


def test_hang_accepts_and_never_answers_while_health_stays_ok(start_sim) -> None:  # type: ignore[no-untyped-def]
    sim = start_sim(hang=True)
    with pytest.raises(openai.APITimeoutError):
        sim.client(timeout=0.5).chat.completions.create(model="sim", messages=HELLO)
    assert httpx.get(sim.url + "/health").status_code == 200
    state = httpx.get(sim.url + "/sim/state").json()
    assert state["generation_requests"] == 1 and state["running"] == 0


def test_slow_start_refuses_connections_while_holding_the_port(start_sim) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    sim: ThreadedSim = start_sim(slow_start=0.8)
    with pytest.raises(httpx.ConnectError):
        httpx.get(sim.url + "/health")
    with socket.socket() as other, pytest.raises(OSError):
        other.bind(("127.0.0.1", sim.server.port))  # bound already, as vLLM binds before loading
    while True:
        try:
            status = httpx.get(sim.url + "/health").status_code
            break
        except httpx.ConnectError:
            assert time.monotonic() - started < 10
            time.sleep(0.05)
    assert status == 200
    assert time.monotonic() - started >= 0.75


def test_warmup_answers_503_then_200(start_sim) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    sim = start_sim(warmup=0.6, time_scale=0.001)
    assert httpx.get(sim.url + "/health").status_code == 503
    busy = httpx.post(sim.url + "/v1/chat/completions", json=CHAT)
    assert busy.status_code == 503 and busy.json()["error"]["type"] == "service_unavailable"
    while httpx.get(sim.url + "/health").status_code == 503:
        assert time.monotonic() - started < 10
        time.sleep(0.05)
    assert time.monotonic() - started >= 0.55
    assert httpx.post(sim.url + "/v1/chat/completions", json=CHAT).status_code == 200


def test_faults_can_be_switched_while_running(start_sim) -> None:  # type: ignore[no-untyped-def]
    sim = start_sim(instant=True)
    with httpx.Client(timeout=5) as http:
        assert http.get(sim.url + "/sim/faults").json() == {
            "error_rate": 0.0, "hang": False, "crash_after_requests": None
        }  # fmt: skip
        assert http.post(sim.url + "/sim/faults", json={"error_rate": 1}).json()["error_rate"] == 1.0
        assert http.post(sim.url + "/v1/chat/completions", json=CHAT).status_code == 500
        http.post(sim.url + "/sim/faults", json={"error_rate": 0, "hang": True})
        with pytest.raises(httpx.ReadTimeout):
            http.post(sim.url + "/v1/chat/completions", json=CHAT, timeout=0.3)
        http.post(sim.url + "/sim/faults", json={"hang": False})
        assert http.post(sim.url + "/v1/chat/completions", json=CHAT).status_code == 200
        bad = http.post(sim.url + "/sim/faults", json={"explode": True})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "explode"
        assert http.post(sim.url + "/sim/faults", json={"error_rate": 2}).status_code == 400
    assert scrape(sim.url)["vllm:request_success_total"] == 1


def test_injector_crashes_through_its_seam_and_counts_again_after_a_change() -> None:
    crashes: list[str] = []
    injector = FaultInjector(Faults(crash_after_requests=2), random.Random(0), crash=crashes.append)
    assert [injector.on_request() for _ in range(2)] == [FaultAction.SERVE] * 2
    injector.on_request()
    assert crashes == ["crash_after_requests=2"]
    injector.update({"crash_after_requests": 1})
    assert injector.on_request() is FaultAction.SERVE
    with pytest.raises(BadRequest):
        injector.update({"hang": "yes"})

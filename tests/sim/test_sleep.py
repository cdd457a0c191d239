"""vLLM's sleep mode on the simulator: /sleep, /wake_up and /is_sleeping, a wake shorter than a start."""

from __future__ import annotations

import time

import httpx

HELLO = {"model": "sim", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 2}


def test_sleeping_refuses_generation_and_a_wake_takes_its_wake_time(start_sim) -> None:  # type: ignore[no-untyped-def]
    sim = start_sim(instant=True, enable_sleep_mode=True, wake_time=0.3)
    with httpx.Client(base_url=sim.url, timeout=5) as http:
        assert http.post("/sleep", params={"level": 1}).status_code == 200
        assert http.get("/is_sleeping").json() == {"is_sleeping": True}
        refused = http.post("/v1/chat/completions", json=HELLO)
        assert refused.status_code == 503 and "sleeping" in refused.json()["error"]["message"]
        assert http.get("/health").status_code == 200  # the process is alive, only its memory is gone
        started = time.monotonic()
        assert http.post("/wake_up").status_code == 200
        assert time.monotonic() - started >= 0.3  # answered once awake
        assert http.get("/is_sleeping").json() == {"is_sleeping": False}
        assert http.post("/v1/chat/completions", json=HELLO).status_code == 200


def test_without_the_flag_there_is_no_sleep_route(start_sim) -> None:  # type: ignore[no-untyped-def]
    sim = start_sim(instant=True)
    assert httpx.post(sim.url + "/sleep", params={"level": 1}, timeout=5).status_code == 404

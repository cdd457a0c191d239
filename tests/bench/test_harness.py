"""Helpers of the comparison scripts in bench/: reading wrk's output, its Lua scripts, nginx's configs, the
fleet benchmark's verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.clients import lua_script, parse_wrk
from harness.fleet_load import chat_bodies, distinct_free_ports, replicas_conf, wrk_script
from harness.procs import cpu_seconds, tree_pids
from harness.targets import nginx_conf

WRK_OUTPUT = """\
Running 5s test @ http://127.0.0.1:41234/v1/chat/completions
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.14ms    2.80ms  39.33ms   84.12%
    Req/Sec     5.16k     1.31k    9.04k    80.00%
  Latency Distribution
     50%  850.00us
     75%    7.10ms
     90%    9.50ms
     99%    1.02s
  25830 requests in 5.00s, 9.56MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:   5165.90
Transfer/sec:      1.91MB
"""


def test_wrk_output_is_read_with_units() -> None:
    m = parse_wrk(WRK_OUTPUT)
    assert (m.requests, m.errors, m.rps, m.seconds) == (25830, 12, 5165.90, 5.0)
    assert (m.p50_ms, m.p90_ms, m.p99_ms) == (pytest.approx(0.85), 9.5, 1020.0)


def test_unreadable_wrk_output_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot read"):
        parse_wrk("wrk: connection refused")


def test_lua_script_posts_the_body_with_a_key() -> None:
    script = lua_script(b'{"model":"sim"}', "sk-1")
    assert 'wrk.method = "POST"' in script
    assert 'wrk.body = [[{"model":"sim"}]]' in script
    assert 'wrk.headers["Authorization"] = "Bearer sk-1"' in script
    with pytest.raises(ValueError):
        lua_script(b'{"a":[[1]]}', None)


def test_nginx_conf_proxies_with_keepalive_and_no_buffering(tmp_path: Path) -> None:
    conf = nginx_conf(8080, "127.0.0.1:9000", tmp_path)
    assert "daemon off;" in conf and "listen 127.0.0.1:8080" in conf
    assert "server 127.0.0.1:9000; keepalive" in conf
    assert "proxy_buffering off;" in conf and 'proxy_set_header Connection "";' in conf


def test_cpu_time_of_this_process_tree_is_counted() -> None:
    import os

    pids = tree_pids(os.getpid())
    assert os.getpid() in pids
    assert cpu_seconds(pids) > 0


def test_fleet_replicas_listen_on_distinct_ports_and_answer_what_the_gateway_asks() -> None:
    ports = distinct_free_ports(300)
    assert len(set(ports)) == 300
    conf = replicas_conf(ports[:3], Path("/tmp/replicas"))
    assert all(f"listen 127.0.0.1:{port} backlog=4096;" in conf for port in ports[:3])
    for location in ("/v1/chat/completions", "/health", "/metrics"):
        assert f"location = {location} " in conf
    completion = conf.split("return 200 '", 1)[1].split("'", 1)[0]
    assert json.loads(completion)["usage"]["completion_tokens"] == 16


def test_fleet_bodies_share_prefixes_and_go_into_wrk_in_turn() -> None:
    bodies = [json.loads(body) for body in chat_bodies(32, input_len=24)]
    systems = {body["messages"][0]["content"] for body in bodies}
    assert len(bodies) == 32 and len(systems) == 2  # 16 questions per system prompt
    assert all([m["role"] for m in body["messages"]] == ["system", "user"] for body in bodies)
    script = wrk_script(["{}", '{"a":1}'])
    assert '[[{}]],\n[[{"a":1}]]' in script and "turn = turn % #bodies + 1" in script
    with pytest.raises(ValueError):
        wrk_script(['{"a":[[1]]}'])


def test_fleet_verdict_is_the_median_of_the_ratios_of_paired_bursts() -> None:
    import fleet

    def run(n: int, size: int, figures: list[float]) -> dict[str, object]:
        bursts = [{"rps": f, "per_cpu_second": f} for f in figures]
        return {"round": n, "policy": "p", "replicas": size, "bursts": bursts}

    runs = [
        run(1, 4, [100.0, 50.0]), run(1, 256, [90.0, 35.0]),
        run(2, 4, [200.0, 100.0, 80.0]), run(2, 256, [150.0, 100.0, 60.0]),
        run(3, 4, [100.0]),  # round 3 lacks its 256-replica run
    ]  # fmt: skip
    assert fleet.paired_ratios(runs, "rps", 4, 256) == [0.9, 0.7, 0.75, 1.0, 0.75]
    (line,) = fleet.verdicts(runs, [4, 256], ["p"])
    assert "req/s 0.75x [0.72–0.95, 5 pairs] (missed)" in line


def test_fleet_pools_a_sizes_bursts() -> None:
    import fleet

    bursts = [
        {"requests": 100, "seconds": 1.0, "cpu_seconds": 0.5, "errors": 0, "rps": 100.0,
         "p50_ms": 1.0, "p90_ms": 2.0, "p99_ms": 3.0},
        {"requests": 300, "seconds": 1.0, "cpu_seconds": 1.0, "errors": 2, "rps": 300.0,
         "p50_ms": 3.0, "p90_ms": 4.0, "p99_ms": 9.0},
    ]  # fmt: skip
    pooled = fleet.pooled(bursts)
    assert (pooled["rps"], pooled["per_cpu_second"], pooled["errors"], pooled["p99_ms"]) == (200.0, 400 / 1.5, 2, 6.0)
    assert [b["per_cpu_second"] for b in pooled["bursts"]] == [200.0, 300.0]

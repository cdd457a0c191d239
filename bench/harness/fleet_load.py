"""A fleet's load in C, so the gateway is what a fleet benchmark measures: nginx answering on many ports
(the replicas) and `wrk` sending shared-prefix chat requests.

Both run on the one core the gateway does not. In Python (aiohttp replicas, `servestack bench`) they
took that core whole at ~7,000 req/s and kept the gateway's core only 29–75 % busy, so req/s measured the
harness. nginx answers a canned completion with `return` (the request body is read and dropped),
`/health` and a small `/metrics` in the simulator's names; `wrk` cycles through the bodies of
servestack's own shared-prefix dataset (`servestack.bench.workload`), so the cache-aware policies
have prefixes to look up.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import socket
import textwrap
from pathlib import Path

from harness.clients import Measurement, run_wrk_script
from harness.procs import HarnessError, Proc, free_port
from harness.targets import nginx_main_conf

WHOLE = json.dumps(
    {
        "id": "chatcmpl-fleet",
        "object": "chat.completion",
        "model": "sim",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": " ".join(["hi"] * 16)}}],
        "usage": {"prompt_tokens": 8, "completion_tokens": 16, "total_tokens": 24},
    },
    separators=(",", ":"),
)
METRICS = (
    "# TYPE vllm:num_requests_waiting gauge\\nvllm:num_requests_waiting 0.0\\n"
    "# TYPE vllm:num_requests_running gauge\\nvllm:num_requests_running 0.0\\n"
    "# TYPE vllm:kv_cache_usage_perc gauge\\nvllm:kv_cache_usage_perc 0.0\\n"
)


def require_tools() -> None:
    missing = [tool for tool in ("nginx", "wrk") if shutil.which(tool) is None]
    if missing:
        raise HarnessError(f"the fleet benchmark needs {' and '.join(missing)}: apt-get install -y nginx wrk")


def start_replicas(tmp: Path, count: int, cpus: str) -> tuple[Proc, list[int]]:
    """One nginx worker on `cpus` listening on `count` ports; returns it and the ports."""
    ports = distinct_free_ports(count)
    prefix = tmp / "replicas"
    prefix.mkdir(exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(replicas_conf(ports, prefix))
    proc = Proc("replicas", ["nginx", "-p", str(prefix), "-c", str(conf)], tmp, cpus=cpus)
    for port in (ports[0], ports[-1]):
        proc.wait_http(f"http://127.0.0.1:{port}/health")
    return proc, ports


def start_nginx_proxy(tmp: Path, ports: list[int], cpus: str) -> tuple[Proc, str]:
    """nginx (one worker on `cpus`) proxying to the replicas on `ports` in turn over keep-alive connections:
    what a C proxy pays for the same fleet. Returns it and its URL."""
    port = free_port()
    prefix = tmp / f"proxy-{len(ports)}"
    prefix.mkdir(exist_ok=True)
    servers = " ".join(f"server 127.0.0.1:{p};" for p in ports)
    conf = prefix / "nginx.conf"
    conf.write_text(
        nginx_main_conf(
            prefix,
            f"""\
            upstream replicas {{ {servers} keepalive 1024; }}
            server {{
                listen 127.0.0.1:{port} backlog=4096;
                location / {{
                    proxy_pass http://replicas;
                    proxy_http_version 1.1;
                    proxy_set_header Connection "";
                }}
            }}
            """,
            worker_connections=16384,
            open_files=65536,
        )
    )
    proc = Proc(f"proxy-{len(ports)}", ["nginx", "-p", str(prefix), "-c", str(conf)], tmp, cpus=cpus)
    url = f"http://127.0.0.1:{port}"
    proc.wait_http(url + "/health")
    return proc, url


def distinct_free_ports(count: int) -> list[int]:
    """`count` ports free now, no two alike (each socket is held until all are bound)."""
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def replicas_conf(ports: list[int], prefix: Path) -> str:
    listens = "".join(f"    listen 127.0.0.1:{port} backlog=4096;\n" for port in ports)
    return nginx_main_conf(
        prefix,
        "keepalive_requests 1000000;\nkeepalive_timeout 75s;\nserver {\n"
        + listens
        + f"    location = /v1/chat/completions {{ default_type application/json; return 200 '{WHOLE}'; }}\n"
        + "    location = /health { default_type text/plain; return 200 'ok'; }\n"
        + f'    location = /metrics {{ default_type text/plain; return 200 "{METRICS}"; }}\n'
        + "}\n",
        worker_connections=16384,
        open_files=65536,
    )


@functools.cache
def chat_bodies(count: int, input_len: int) -> tuple[str, ...]:
    """`count` chat request bodies of servestack's shared-prefix dataset (16 questions per system prompt),
    made once per process."""
    from servestack.bench.workload import build_workload

    workload = build_workload("shared-prefix", requests=count, input_len=input_len, output_len=16, seed=7)
    bodies = []
    for conversation in workload.conversations[:count]:
        messages = [{"role": "system", "content": conversation.system}] if conversation.system else []
        messages.append({"role": "user", "content": conversation.turns[0].text})
        bodies.append(json.dumps({"model": "sim", "max_tokens": 16, "messages": messages}, separators=(",", ":")))
    return tuple(bodies)


def wrk_script(bodies: tuple[str, ...] | list[str]) -> str:
    """A wrk script sending `bodies` in turn (each a Lua long string)."""
    if any("]]" in body for body in bodies):
        raise ValueError("a body holds ']]', which ends a Lua long string")
    table = ",\n".join(f"[[{body}]]" for body in bodies)
    return (
        textwrap.dedent(
            """\
        wrk.method = "POST"
        wrk.headers["Content-Type"] = "application/json"
        local bodies = {
        %s
        }
        local turn = 0
        request = function()
            turn = turn %% #bodies + 1
            return wrk.format(nil, nil, nil, bodies[turn])
        end
        """
        )
        % table
    )


def run_wrk_bodies(url: str, bodies: tuple[str, ...], *, seconds: float, connections: int, cpus: str) -> Measurement:
    """`wrk -t1` at `connections` against `url` for `seconds`, sending `bodies` in turn."""
    return run_wrk_script(url, wrk_script(bodies), seconds=seconds, connections=connections, cpus=cpus)

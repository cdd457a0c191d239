"""What the overhead benchmark sends requests to: the upstream itself, and each proxy in front of it.

A `Target` starts its process(es) pinned to the proxy core, waits until a chat completion passes
through, and knows its chat URL and the key it needs. Every proxy forwards to the same upstream
(the simulator in instant mode), except servestack, which launches its own simulator from the
stack file (same flags) and has it moved to the upstream's core.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness.compiled import compiled_build
from harness.procs import HarnessError, Proc, free_port, pin, tree_pids, wait_for
from harness.venvs import peer_python

CHAT_PATH = "/v1/chat/completions"
BENCH_DIR = Path(__file__).resolve().parent.parent
PROBE_BODY = b'{"model":"sim","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}'


@dataclass
class Layout:
    """Where things run: the client and the upstream share one core, the proxy gets the other."""

    tmp: Path
    upstream_url: str
    client_cpus: str = "0"
    proxy_cpus: str = "1"
    install: bool = True


@dataclass
class Target:
    name: str
    label: str
    url: str = ""  # the chat completions URL, once started
    api_key: str | None = None
    note: str = ""
    procs: list[Proc] = field(default_factory=list)

    def start(self, layout: Layout) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def cpu_pids(self) -> list[int]:
        """The processes whose CPU time is this proxy's cost (empty: not a proxy)."""
        return [pid for proc in self.procs for pid in tree_pids(proc.pid)]

    def wait_chat(self, proc: Proc, timeout: float = 60.0) -> None:
        """Block until a chat completion passes through this target."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        wait_for(lambda: _chat_ok(self.url, headers, proc), timeout, f"a chat completion through {self.label}")


def _chat_ok(url: str, headers: dict[str, str], proc: Proc) -> bool:
    if not proc.alive():
        raise HarnessError(f"{proc.name} exited; {proc.log_path}:\n{proc.log_tail()}")
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=PROBE_BODY, headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class Direct(Target):
    def __init__(self) -> None:
        super().__init__("direct", "direct (sim --instant)")

    def start(self, layout: Layout) -> None:
        self.url = layout.upstream_url + CHAT_PATH


class BareUpstream(Target):
    def __init__(self) -> None:
        super().__init__("bare", "bare aiohttp upstream", note="reference server, not a proxy")

    def start(self, layout: Layout) -> None:
        port = free_port()
        script = str(BENCH_DIR / "harness" / "bare_upstream.py")
        proc = Proc(self.name, [sys.executable, script, str(port)], layout.tmp, cpus=layout.client_cpus)
        self.procs.append(proc)
        self.url = f"http://127.0.0.1:{port}{CHAT_PATH}"
        self.wait_chat(proc)

    def cpu_pids(self) -> list[int]:
        return []


class Nginx(Target):
    def __init__(self, worker_connections: int = 4096) -> None:
        super().__init__("nginx", "nginx proxy_pass")
        self.worker_connections = worker_connections  # client and upstream connections together

    def start(self, layout: Layout) -> None:
        port = free_port()
        prefix = layout.tmp / "nginx"
        prefix.mkdir(exist_ok=True)
        conf = prefix / "nginx.conf"
        upstream = layout.upstream_url.removeprefix("http://")
        conf.write_text(nginx_conf(port, upstream, prefix, worker_connections=self.worker_connections))
        proc = Proc(self.name, ["nginx", "-p", str(prefix), "-c", str(conf)], layout.tmp, cpus=layout.proxy_cpus)
        self.procs.append(proc)
        self.url = f"http://127.0.0.1:{port}{CHAT_PATH}"
        self.wait_chat(proc)


def nginx_conf(port: int, upstream: str, prefix: Path, *, worker_connections: int = 4096) -> str:
    return nginx_main_conf(
        prefix,
        f"""\
        upstream engine {{ server {upstream}; keepalive 128; }}
        server {{
            listen 127.0.0.1:{port} reuseport backlog=4096;
            location / {{
                proxy_pass http://engine;
                proxy_http_version 1.1;
                proxy_set_header Connection "";
                proxy_buffering off;
            }}
        }}
        """,
        worker_connections=worker_connections,
    )


# nginx opens these even when unused: kept under the prefix
TEMP_PATHS = (("client_body", "body"), ("proxy", "proxy"), ("fastcgi", "fastcgi"), ("uwsgi", "uwsgi"), ("scgi", "scgi"))


def nginx_main_conf(prefix: Path, http: str, *, worker_connections: int = 4096, open_files: int | None = None) -> str:
    """A one-worker, foreground nginx config whose files stay under `prefix`, with `http` inside its http block."""
    limit = f"worker_rlimit_nofile {open_files};\n" if open_files else ""
    return (
        f"daemon off;\nworker_processes 1;\n{limit}pid {prefix}/nginx.pid;\nerror_log {prefix}/error.log warn;\n"
        f"events {{ worker_connections {worker_connections}; }}\n"
        "http {\n    access_log off;\n"
        + "".join(f"    {kind}_temp_path {prefix}/{name};\n" for kind, name in TEMP_PATHS)
        + textwrap.indent(textwrap.dedent(http), "    ")
        + "}\n"
    )


class SglangRouter(Target):
    def __init__(self) -> None:
        super().__init__("sglang-router", "SGLang router 0.3.2")

    def start(self, layout: Layout) -> None:
        python = _peer(self.name, layout)
        port = free_port()
        argv = [str(python), "-m", "sglang_router.launch_router", "--host", "127.0.0.1", "--port", str(port)]
        # Its Prometheus exporter listens on 29000 by default, which another router on the machine may hold.
        argv += ["--worker-urls", layout.upstream_url, "--log-level", "warn", "--prometheus-port", str(free_port())]
        proc = Proc(self.name, argv, layout.tmp, cpus=layout.proxy_cpus)
        self.procs.append(proc)
        self.url = f"http://127.0.0.1:{port}{CHAT_PATH}"
        self.wait_chat(proc, timeout=90)


class LiteLLM(Target):
    def __init__(self) -> None:
        super().__init__("litellm", "LiteLLM 1.106.2")

    def start(self, layout: Layout) -> None:
        python = _peer(self.name, layout)
        port = free_port()
        self.api_key = "sk-bench-" + secrets.token_hex(16)
        config = layout.tmp / "litellm.yaml"
        model = {"model": "openai/sim", "api_base": layout.upstream_url + "/v1", "api_key": "none"}
        config.write_text(yaml.safe_dump({"model_list": [{"model_name": "sim", "litellm_params": model}]}))
        argv = [str(python.parent / "litellm"), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--num_workers", "1"]
        env = {"LITELLM_MASTER_KEY": self.api_key, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
        proc = Proc(self.name, argv, layout.tmp, cpus=layout.proxy_cpus, env=env)
        self.procs.append(proc)
        self.url = f"http://127.0.0.1:{port}{CHAT_PATH}"
        self.wait_chat(proc, timeout=180)


def _peer(name: str, layout: Layout) -> Path:
    python = peer_python(name, install=layout.install)
    if python is None:
        raise HarnessError(f"{name} is not installed (run without --no-install once)")
    return python


class Servestack(Target):
    """`servestack up -f STACK` with the simulator it launches moved to the upstream's core; `compiled`:
    the compiled build of the same sources (harness/compiled.py)."""

    def __init__(self, stack_file: Path, label: str = "servestack", *, compiled: bool = False) -> None:
        super().__init__("servestack-compiled" if compiled else "servestack", label)
        self.stack_file = stack_file
        self.compiled = compiled
        self.engine_pids: list[int] = []

    def start(self, layout: Layout) -> None:
        home = layout.tmp / f"{self.name}-home"
        port, engine_port = free_port(), free_port()
        admin_key = "sk-admin-" + secrets.token_hex(16)
        env = {
            "SERVESTACK_HOME": str(home),
            "SERVESTACK_ADMIN_KEY": admin_key,
            "BENCH_GATEWAY_PORT": str(port),
            "BENCH_ENGINE_PORT": str(engine_port),
        }
        if self.compiled:
            env["PYTHONPATH"] = str(compiled_build())
        if _auth_enabled(self.stack_file):
            self.api_key = _create_key(env) or admin_key
        argv = [sys.executable, "-m", "servestack", "up", "-f", str(self.stack_file)]
        proc = Proc(self.name, argv, layout.tmp, cpus=layout.proxy_cpus, env=env)
        self.procs.append(proc)
        self.url = f"http://127.0.0.1:{port}{CHAT_PATH}"
        self.wait_chat(proc, timeout=90)
        self.engine_pids = _engine_pids(env)
        for pid in self.engine_pids:
            pin(pid, layout.client_cpus)

    def cpu_pids(self) -> list[int]:
        engines = {p for pid in self.engine_pids for p in tree_pids(pid)}
        return [pid for pid in super().cpu_pids() if pid not in engines]

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop(sig=2)  # SIGINT: the controller stops its engines, then exits


def _auth_enabled(stack_file: Path) -> bool:
    data = yaml.safe_load(stack_file.read_text()) or {}
    auth = (data.get("gateway") or {}).get("auth") or {}
    return bool(auth.get("enabled"))


def _create_key(env: dict[str, str]) -> str | None:
    """A key from `servestack keys create` in the run's own state dir (None if that command is missing)."""
    argv = [sys.executable, "-m", "servestack", "keys", "create", "--name", "bench"]
    result = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **env}, timeout=60)
    match = re.search(r"sk-ss-[A-Za-z0-9_\-]+", result.stdout + result.stderr)
    return match.group(0) if match else None


def _engine_pids(env: dict[str, str]) -> list[int]:
    argv = [sys.executable, "-m", "servestack", "status", "--json"]
    result = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **env}, timeout=60, check=True)
    services = json.loads(result.stdout).get("services") or []
    return [int(s["pid"]) for s in services if s.get("pid")]


class ServestackGateway(Target):
    """servestack's gateway as `servestack up` serves it (gateway_server.py), in front of the layout's upstream;
    `compiled`: the compiled build of the same sources (harness/compiled.py)."""

    def __init__(self, *, compiled: bool = False) -> None:
        suffix = "-compiled" if compiled else ""
        super().__init__(f"servestack{suffix}", "servestack gateway" + (", compiled" if compiled else ""))
        self.compiled = compiled

    def start(self, layout: Layout) -> None:
        port = free_port()
        script = str(BENCH_DIR / "harness" / "gateway_server.py")
        home = layout.tmp / f"{self.name}-gateway-home"
        argv = [sys.executable, script, str(port), layout.upstream_url, str(home)]
        env = {"PYTHONPATH": str(compiled_build())} if self.compiled else None
        proc = Proc(self.name, argv, layout.tmp, cpus=layout.proxy_cpus, env=env)
        self.procs.append(proc)
        self.url = f"http://127.0.0.1:{port}{CHAT_PATH}"
        self.wait_chat(proc)


class PythonFloor(Target):
    """The least a Python proxy costs here: bytes through, untouched, on uvloop (floor_proxy.py)."""

    def __init__(self) -> None:
        super().__init__("python-floor", "Python floor (uvloop, bytes through)", note="reference, no proxy logic")

    def start(self, layout: Layout) -> None:
        port = free_port()
        script = str(BENCH_DIR / "harness" / "floor_proxy.py")
        argv = [sys.executable, script, str(port), layout.upstream_url]
        proc = Proc(self.name, argv, layout.tmp, cpus=layout.proxy_cpus)
        self.procs.append(proc)
        self.url = f"http://127.0.0.1:{port}{CHAT_PATH}"
        self.wait_chat(proc)


class PythonLean(Target):
    """servestack's own per-request parts in a shell of callbacks (lean_gateway.py); `full`: keys, metrics and the
    usage ledger on, as `gateway_overhead.py --full` runs servestack, else the `gateway:` section's defaults."""

    def __init__(self, *, full: bool = False) -> None:
        super().__init__("python-lean", "servestack's parts, callback shell", note="experiment: happy path only")
        self.full = full

    def start(self, layout: Layout) -> None:
        port = free_port()
        home = layout.tmp / "servestack-lean-home"
        if self.full:
            self.api_key = _create_key({"SERVESTACK_HOME": str(home)})
            if self.api_key is None:
                raise HarnessError("'servestack keys create' gave no key")
        script = str(BENCH_DIR / "harness" / "lean_gateway.py")
        argv = [sys.executable, script, str(port), layout.upstream_url, str(home), "full" if self.full else "default"]
        proc = Proc(self.name, argv, layout.tmp, cpus=layout.proxy_cpus, env={"SERVESTACK_HOME": str(home)})
        self.procs.append(proc)
        self.url = f"http://127.0.0.1:{port}{CHAT_PATH}"
        self.wait_chat(proc)


class GatewayApp(Target):
    """The gateway app alone (no controller) under an ASGI server, to compare servers."""

    def __init__(self, server: str) -> None:
        super().__init__(f"gateway-{server}", f"gateway app / {server}")
        self.server = server

    def start(self, layout: Layout) -> None:
        port = free_port()
        target = "harness.gateway_app:app"
        if self.server == "granian":
            argv = ["granian", "--interface", "asgi", "--loop", "uvloop", "--workers", "1", "--runtime-threads", "1"]
            argv += ["--host", "127.0.0.1", "--port", str(port), "--no-ws", "--log-level", "warning", target]
        else:
            argv = ["uvicorn", "--http", "httptools", "--loop", "uvloop", "--no-access-log", "--log-level", "warning"]
            argv += ["--no-server-header", "--no-date-header", "--host", "127.0.0.1", "--port", str(port), target]
        argv[0] = str(Path(sys.executable).parent / argv[0])
        env = {"BENCH_UPSTREAM": layout.upstream_url, "PYTHONPATH": str(BENCH_DIR)}
        proc = Proc(self.name, argv, layout.tmp, cpus=layout.proxy_cpus, env=env)
        self.procs.append(proc)
        self.url = f"http://127.0.0.1:{port}{CHAT_PATH}"
        self.wait_chat(proc)


def make_targets(names: list[str], stack_file: Path, stack_label: str) -> list[Target]:
    makers = {
        "direct": Direct,
        "bare": BareUpstream,
        "servestack": lambda: Servestack(stack_file, stack_label),
        "servestack-compiled": lambda: Servestack(stack_file, f"{stack_label}, compiled", compiled=True),
        "sglang-router": SglangRouter,
        "litellm": LiteLLM,
        "nginx": Nginx,
        "python-floor": PythonFloor,
        "python-lean": lambda: PythonLean(full=_auth_enabled(stack_file)),
        "gateway-uvicorn": lambda: GatewayApp("uvicorn"),
        "gateway-granian": lambda: GatewayApp("granian"),
    }
    unknown = [n for n in names if n not in makers]
    if unknown:
        raise HarnessError(f"unknown targets {unknown}; known: {', '.join(makers)}")
    return [makers[n]() for n in names]

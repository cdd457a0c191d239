"""The console in a real headless Chromium against stacks started with `servestack up -d`: simulators on two
simulated H100s (auth on, the admin key), the same without auth, and the real default engine (llama.cpp).

Every test checks, at its end, that no request of the page left 127.0.0.1 (Playwright's interception refuses
and records any) and that no secret (the admin key, a service's HF_TOKEN, a client key) was in a URL, in an
answer to the page or on it. Screenshots of each page go to artifacts/screenshots/.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import free_port
from tests.console.browser import assert_clean, console_page, launch_chromium, log_in, screenshot, state_of
from tests.console.running import ADMIN_KEY, Running, sim_stack, start, stop, wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Browser  # the `browser` fixture skips the tests without playwright

pytestmark = pytest.mark.browser

# A fetch() init that asks to stop the `tools` service, as the page would but without a key.
STOP_TOOLS = {
    "method": "POST",
    "headers": {"content-type": "application/json"},
    "body": json.dumps({"service": "tools", "action": "stop"}),
}

GPU_STACK = """
  vision:
    engine: sim
    model: vision
    gpus: [1]
    memory_fraction: 0.45
    load: on-demand
    args: ["--instant"]
"""


def gpu_stack(port: int) -> str:
    """The sim stack on two simulated H100s: chat's replicas on GPU 0 and 1, an on-demand service on GPU 1."""
    text = sim_stack(port, extra=GPU_STACK)
    return text.replace("    replicas: 2\n", "    replicas: 2\n    gpus: [0]\n    memory_fraction: 0.4\n")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


@pytest.fixture(scope="module")
def stack(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("console-browser")
    running = start(tmp, gpu_stack, env={}, up_args=("--gpus", "2xH100"))
    try:
        yield running
    finally:
        stop(running)


def test_overview_shows_every_replica_with_its_state(browser: Browser, stack: Running) -> None:
    with console_page(browser) as (page, traffic):
        log_in(page, stack.url, ADMIN_KEY)
        page.wait_for_selector('tr.replica[data-replica="chat#1"][data-state="ready"]')
        wait_until(lambda: state_of(page, "chat") == "ready" and state_of(page, "tools") == "ready")
        assert state_of(page, "vision") == "unloaded"  # on demand, never asked for
        assert page.locator("tr.replica").count() == 4
        assert page.locator(".gpu[data-gpu]").count() == 2  # the plan's GPU memory bars
        gpu0, gpu1 = page.inner_text('.gpu[data-gpu="0"]'), page.inner_text('.gpu[data-gpu="1"]')
        assert "chat 31.9 GiB" in gpu0 and "chat#1 31.9 GiB" in gpu0 and "63.7 GiB held" in gpu0  # 0.4 each
        assert "vision 35.8 GiB (not loaded)" in gpu1 and "0 B held" in gpu1
        assert "2/2 ready" in page.inner_text('tr.service[data-service="chat"]')
        screenshot(page, "overview")
        assert_clean(page, traffic, stack.secrets)
    for name, options in (("overview-dark", {"dark": True}), ("overview-phone", {"width": 390, "height": 844})):
        with console_page(browser, **options) as (page, traffic):  # type: ignore[arg-type]
            log_in(page, stack.url, ADMIN_KEY)
            page.wait_for_selector('tr.replica[data-state="ready"]')
            screenshot(page, name)
            assert_clean(page, traffic, stack.secrets)


def test_a_killed_engine_turns_its_row_red_then_ready_without_a_reload(browser: Browser, stack: Running) -> None:
    with console_page(browser) as (page, traffic):
        log_in(page, stack.url, ADMIN_KEY)
        page.wait_for_selector('tr.replica[data-replica="chat#1"][data-state="ready"]')
        page.evaluate("window.sameDocument = true")
        os.kill(stack.replica("chat#1")["pid"], signal.SIGKILL)
        page.wait_for_selector('tr.replica[data-replica="chat#1"][data-state="restarting"]', timeout=15_000)
        assert "SIGKILL" in page.inner_text('tr.replica[data-replica="chat#1"]')
        screenshot(page, "overview-killed")
        page.wait_for_selector('tr.replica[data-replica="chat#1"][data-state="ready"]', timeout=60_000)
        assert page.evaluate("window.sameDocument") is True  # the same page, updated in place
        assert_clean(page, traffic, stack.secrets)


def test_traffic_charts_move_when_bench_sends_load(browser: Browser, stack: Running) -> None:
    with console_page(browser) as (page, traffic):
        log_in(page, stack.url, ADMIN_KEY)
        page.click('#nav a[data-page="traffic"]')
        chart = 'svg[aria-label="requests per second"]'
        page.wait_for_selector(chart)
        before = float(page.get_attribute(chart, "data-max") or 0)
        bench = stack.cli("bench", stack.url, "-m", "chat", "-c", "4", "-n", "80", "--api-key", ADMIN_KEY)
        assert bench.returncode == 0, bench.stdout + bench.stderr
        page.wait_for_function(
            "([sel, before]) => Number(document.querySelector(sel)?.dataset.max) > Math.max(before, 1)",
            arg=[chart, before],
            timeout=15_000,
        )
        ttft = 'svg[aria-label="time to first token"]'
        page.wait_for_function("(s) => Number(document.querySelector(s)?.dataset.max) > 0", arg=ttft, timeout=15_000)
        page.wait_for_selector('table.models tr[data-model="chat"]')
        screenshot(page, "traffic")
        assert_clean(page, traffic, stack.secrets)


def test_the_log_page_streams_new_engine_lines(browser: Browser, stack: Running) -> None:
    serving = ".log .line:has-text('sim: serving')"
    with console_page(browser) as (page, traffic):
        log_in(page, stack.url, ADMIN_KEY)
        page.goto(stack.url + "/ui/#/logs?service=tools")
        page.wait_for_selector(serving)
        before = page.locator(serving).count()
        restarted = stack.cli("restart", "tools")  # the new engine writes its first lines
        assert restarted.returncode == 0, restarted.stderr
        page.wait_for_function(
            "(n) => [...document.querySelectorAll('.log .line')].filter(l => l.textContent.includes('sim: serving'))"
            ".length > n",
            arg=before,
            timeout=20_000,
        )
        page.fill("input[type=search]", "serving")
        shown = [line for line in page.locator(".log .line").all() if line.is_visible()]
        assert len(shown) == before + 1 and all("serving" in line.inner_text() for line in shown)
        page.fill("input[type=search]", "")
        screenshot(page, "logs")
        assert_clean(page, traffic, stack.secrets)


def test_an_admin_restart_from_the_browser_restarts_the_service(browser: Browser, stack: Running) -> None:
    before = stack.replica("tools")["pid"]
    with console_page(browser) as (page, traffic):
        log_in(page, stack.url, ADMIN_KEY)
        button = 'tr.service[data-service="tools"] button[data-action="restart"]'
        page.wait_for_selector(button)
        page.click(button)
        page.click(button)  # the second click confirms
        page.wait_for_selector('.actions li[data-service="tools"][data-action="restart"]')
        page.wait_for_selector('.actions li[data-service="tools"][data-state="done"]', timeout=60_000)
        page.wait_for_selector('tr.replica[data-replica="tools"][data-state="ready"]')
        screenshot(page, "overview-action")
        assert_clean(page, traffic, stack.secrets)
    after = stack.replica("tools")
    assert after["status"] == "ready" and after["pid"] != before


def test_load_and_unload_an_on_demand_service_from_the_browser(browser: Browser, stack: Running) -> None:
    row = 'tr.service[data-service="vision"]'
    with console_page(browser) as (page, traffic):
        log_in(page, stack.url, ADMIN_KEY)
        page.click(f'{row} button[data-action="load"]')  # loading takes nothing away: no second click
        page.wait_for_selector('.actions li[data-service="vision"][data-action="load"][data-state="done"]')
        page.wait_for_selector('tr.replica[data-replica="vision"][data-state="loaded"]')
        assert "vision 35.8 GiB" in page.inner_text('.gpu[data-gpu="1"]') and "35.8 GiB held" in page.inner_text(
            '.gpu[data-gpu="1"]'
        )
        page.click(f'{row} button[data-action="unload"]')
        page.click(f'{row} button[data-action="unload"]')
        page.wait_for_selector('.actions li[data-service="vision"][data-action="unload"][data-state="done"]')
        page.wait_for_selector('tr.replica[data-replica="vision"][data-state="unloaded"]')
        assert_clean(page, traffic, stack.secrets)
    assert stack.replica("vision")["status"] == "unloaded"


def test_the_plan_page_shows_the_plan_and_explains_explore(browser: Browser, stack: Running) -> None:
    with console_page(browser) as (page, traffic):
        log_in(page, stack.url, ADMIN_KEY)
        page.click('#nav a[data-page="plan"]')
        page.wait_for_selector('section[data-service="chat"]')
        assert page.locator(".plan-grid section").count() == 3
        assert "loaded together" in page.inner_text("main")
        page.select_option('select[aria-label="service to explore"]', "chat")
        page.click(".explore button")
        page.wait_for_selector(".explore .error:has-text('no tensor parallelism')")
        screenshot(page, "plan")
        assert_clean(page, traffic, stack.secrets)


def test_keys_and_usage_for_the_admin_only(browser: Browser, stack: Running) -> None:
    created = stack.cli("keys", "create", "--name", "dave", "--rpm", "60", "--json")
    assert created.returncode == 0, created.stderr
    dave = json.loads(created.stdout)["secret"]
    secrets = [*stack.secrets, dave]
    chat = {"model": "tools", "messages": [{"role": "user", "content": "hi"}]}
    with stack.admin(dave) as client:  # a request of dave's for the usage tables, once the gateway has his key
        wait_until(lambda: client.post("/v1/chat/completions", json=chat).status_code == 200, what="dave's key")
    time.sleep(1)  # the usage ledger commits its rows every 0.2 s
    with console_page(browser) as (page, traffic):
        log_in(page, stack.url, ADMIN_KEY)
        page.click('#nav a[data-page="keys"]')
        page.wait_for_selector('table.keys tr[data-key="dave"]')
        page.wait_for_selector('table.usage.by-key tr[data-group="dave"]')
        page.wait_for_selector('table.usage.by-model tr[data-group="tools"]')
        screenshot(page, "keys")
        assert_clean(page, traffic, secrets)
    with console_page(browser) as (page, traffic):  # a client key is not the admin key
        log_in(page, stack.url, dave)
        page.wait_for_selector("form.login .error:has-text('not the admin key')")
        assert page.locator("table").count() == 0
        assert_clean(page, traffic, secrets)


def test_without_the_admin_key_actions_are_refused_and_no_admin_data_is_shown(browser: Browser, stack: Running) -> None:
    with console_page(browser) as (page, traffic):
        page.goto(stack.url + "/ui/")
        page.wait_for_selector("form.login")
        for name in ("traffic", "logs", "plan", "keys"):
            page.goto(f"{stack.url}/ui/#/{name}")
            page.wait_for_selector("form.login")
            assert page.locator("table, .log .line, svg.chart").count() == 0
        screenshot(page, "login")
        answers = page.evaluate(
            """async (stop) => {
                const post = await fetch('/admin/actions', stop);
                const read = await fetch('/admin/overview');
                return [post.status, read.status, await read.text()];
            }""",
            STOP_TOOLS,
        )
        assert answers[0] == 401 and answers[1] == 401 and "chat" not in answers[2]
        assert_clean(page, traffic, stack.secrets)
    assert stack.replica("tools")["status"] == "ready"


@pytest.fixture(scope="module")
def open_stack(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = start(tmp_path_factory.mktemp("console-open"), lambda port: sim_stack(port, auth=False, replicas=1))
    try:
        yield running
    finally:
        stop(running)


def test_with_auth_off_the_console_is_read_only(browser: Browser, open_stack: Running) -> None:
    with console_page(browser) as (page, traffic):
        page.goto(open_stack.url, wait_until="load")  # `/` sends a browser to the console
        assert page.url == open_stack.url + "/ui/"
        page.wait_for_selector('tr.replica[data-replica="chat"][data-state="ready"]')
        assert page.locator("tr.service button").count() == 0
        assert "read-only" in page.inner_text("#who")
        refused = page.evaluate("async (stop) => (await fetch('/admin/actions', stop)).status", STOP_TOOLS)
        assert refused == 401
        page.click('#nav a[data-page="keys"]')
        page.wait_for_selector("main:has-text('Keys and usage need the admin key')")
        assert page.locator("table").count() == 0
        assert_clean(page, traffic, open_stack.secrets)
    assert open_stack.replica("tools")["status"] == "ready"


def test_the_real_default_engine(browser: Browser, tmp_path: Path) -> None:
    """`servestack up` of the bundled default stack (SmolLM2 on llama.cpp): its row, and its log streaming."""
    port = free_port()
    env = {**os.environ, "SERVESTACK_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    up = subprocess.run(
        [sys.executable, "-m", "servestack", "up", "-d", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert up.returncode == 0, up.stdout + up.stderr
    url = f"http://127.0.0.1:{port}"
    try:
        with console_page(browser) as (page, traffic):
            page.goto(url + "/ui/")
            page.wait_for_selector('tr.replica[data-replica="smollm2"][data-state="ready"]', timeout=120_000)
            assert "llamacpp" in page.inner_text('tr.service[data-service="smollm2"]')
            page.goto(url + "/ui/#/logs?service=smollm2")
            page.wait_for_selector(".log .line")
            before = page.locator(".log .line").count()
            ask = page.evaluate(
                """async () => (await fetch('/v1/chat/completions', {method: 'POST',
                    headers: {'content-type': 'application/json'},
                    body: JSON.stringify({model: 'smollm2', max_tokens: 8,
                        messages: [{role: 'user', content: 'Say hi'}]})})).status"""
            )
            assert ask == 200
            more = "(n) => document.querySelectorAll('.log .line').length > n"
            page.wait_for_function(more, arg=before, timeout=30_000)
            screenshot(page, "logs-llamacpp")
            assert_clean(page, traffic, [])
    finally:
        subprocess.run([sys.executable, "-m", "servestack", "down"], env=env, capture_output=True, timeout=120)

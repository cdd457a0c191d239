"""The console's JSON routes on a stack started with `servestack up -d` (simulators): what they show is what
`status`, `plan` and `logs` say, with secrets masked; actions go through the control socket's verbs."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator

import httpx
import pytest

from tests.console.running import HF_TOKEN, Running, sim_stack, start, stop, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = start(tmp_path_factory.mktemp("console-api"), lambda port: sim_stack(port))
    try:
        yield running
    finally:
        stop(running)


def states(client: httpx.Client) -> dict[str, str]:
    overview = client.get("/admin/overview").json()
    return {r["label"]: r["state"] for s in overview["services"] for r in s["replicas"]}


def test_overview_is_status_for_every_replica_and_holds_no_secret(stack: Running) -> None:
    with stack.admin() as admin:
        overview = admin.get("/admin/overview")
        plan = admin.get("/admin/plan")
    assert overview.status_code == 200 and plan.status_code == 200
    assert states_of(overview.json()) == {"chat": "ready", "chat#1": "ready", "tools": "ready"}
    status = {(r["service"], r["replica"]): r["pid"] for r in stack.status()["services"]}
    shown = {(r["service"], r["replica"]): r["pid"] for s in overview.json()["services"] for r in s["replicas"]}
    assert shown == status
    assert list(plan.json()["services"]) == ["chat", "tools"]
    for secret in stack.secrets:
        assert secret not in overview.text and secret not in plan.text
    assert "command" not in overview.text  # an engine's command line may carry its flags' secrets


def states_of(overview: dict[str, object]) -> dict[str, str]:
    services = overview["services"]
    assert isinstance(services, list)
    return {r["label"]: r["state"] for s in services for r in s["replicas"]}


def test_log_stream_is_the_engines_log_with_secrets_masked(stack: Running) -> None:
    marker = "console-test: token is " + HF_TOKEN
    with (
        stack.admin() as admin,
        admin.stream("GET", "/admin/logs", params={"service": "chat", "replica": "1", "lines": "50"}) as events,
    ):
        assert events.headers["content-type"] == "text/event-stream"
        lines: list[dict[str, str]] = []
        for raw in events.iter_lines():
            if raw.startswith("data: "):
                lines.append(json.loads(raw.removeprefix("data: ")))
            if any("sim: serving" in x["text"] for x in lines) and not any(marker[:20] in x["text"] for x in lines):
                with stack.log_path("chat#1").open("a") as log:  # the engine prints its token, as some do
                    log.write(marker + "\n")
            if any(marker[:20] in x["text"] for x in lines):
                break
    assert {x["replica"] for x in lines} == {"chat#1"}
    printed = next(x["text"] for x in lines if marker[:20] in x["text"])
    assert HF_TOKEN not in printed and printed.endswith("***")


def test_restart_from_the_console_goes_through_the_control_path(stack: Running) -> None:
    before = stack.replica("tools")["pid"]
    with stack.admin() as admin:
        asked = admin.post("/admin/actions", json={"service": "tools", "action": "restart"})
        assert asked.status_code == 202, asked.text
        number = asked.json()["action"]["id"]

        def finished() -> dict[str, object] | None:
            record = next(a for a in admin.get("/admin/actions").json()["actions"] if a["id"] == number)
            return record if record["state"] != "running" else None

        record = wait_until(finished, timeout=60, what="the restart to finish")
    assert record["state"] == "done" and record["by"] == "admin key"
    after = stack.replica("tools")
    assert after["status"] == "ready" and after["pid"] != before


def test_bad_actions_are_refused_with_a_reason(stack: Running) -> None:
    with stack.admin() as admin, stack.admin(key=None) as anonymous:
        unknown = admin.post("/admin/actions", json={"service": "nope", "action": "restart"})
        assert unknown.status_code == 404 and "chat, tools" in unknown.json()["error"]["message"]
        verb = admin.post("/admin/actions", json={"service": "chat", "action": "explode"})
        assert verb.status_code == 400 and verb.json()["error"]["param"] == "action"
        assert anonymous.post("/admin/actions", json={"service": "chat", "action": "stop"}).status_code == 401
        explore = admin.get("/admin/plan/explore", params={"service": "chat"})
        assert explore.status_code == 400 and "no tensor parallelism" in explore.json()["error"]["message"]
    assert stack.replica("chat")["status"] == "ready"


def test_a_killed_engine_shows_its_exit_then_comes_back(stack: Running) -> None:
    victim = stack.replica("chat")
    os.kill(victim["pid"], signal.SIGKILL)
    with stack.admin() as admin:
        down = wait_until(lambda: states(admin).get("chat") != "ready", what="chat to leave ready")
        assert down
        overview = admin.get("/admin/overview").json()
        chat = next(r for s in overview["services"] for r in s["replicas"] if r["label"] == "chat")
        assert chat["state"] in ("restarting", "starting", "failed")
        assert "SIGKILL" in (chat["last_error"] or "") + json.dumps(chat["events"])
        wait_until(lambda: states(admin).get("chat") == "ready", timeout=60, what="chat to be ready again")

"""Every message the CLI prints reaches the terminal as text: no markup tag is left in it, and user text
that looks like markup (`[INFO]`, `servestack[llamacpp]`) is printed as it is."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rich.console import Console

from servestack.cli.app import console, err_console, print_error
from servestack.cli.planning import print_commands, print_plan
from servestack.cli.progress import RichReporter
from servestack.cli.running import show_replicas
from servestack.cli.smoke import print_smoke_result
from servestack.controller import SmokeResult
from servestack.errors import EngineError
from servestack.gpus import parse_inventory
from servestack.plan import make_plan
from servestack.settings import Settings
from servestack.stack import parse_stack
from servestack.supervisor import ReplicaStatus, StateStore, Supervisor, history

CLI_SOURCES = Path(__file__).resolve().parents[2] / "src" / "servestack" / "cli"
TAG = re.compile(r"\[/\]|\[/?(?:bold|dim|red|green|yellow|cyan|italic)\b")
LOOKS_LIKE_MARKUP = "[INFO] pip install 'servestack[llamacpp]'"
CRASH = history.exited(1, "restarting in 1s", 0, [LOOKS_LIKE_MARKUP])
BACK = history.ready(0.5, 1)


def rendered(target: Console, show: Callable[[], object]) -> str:
    with target.capture() as capture:
        show()
    return capture.get()


def assert_plain(text: str) -> None:
    assert text.strip(), "nothing was printed"
    assert not TAG.search(text), f"markup left in the output:\n{text}"


@pytest.fixture
def replica(tmp_path: Path) -> Iterator[object]:
    stack = parse_stack(
        "services:\n  chat:\n    engine: sim\n    model: sim\n    port: 8123\n", source="test", environ={}
    )
    settings = Settings(home=tmp_path / "home [1]")
    supervisor = Supervisor(StateStore(settings.state_dir), settings)
    prepared = supervisor.prepare(make_plan(stack).services["chat"])
    prepared.state = prepared.state.model_copy(update={"last_error": LOOKS_LIKE_MARKUP, "pid": 42})
    yield prepared


def test_the_reporter_prints_every_event_without_markup(replica: object) -> None:
    reporter = RichReporter(console)
    events: list[Callable[[], object]] = [
        lambda: reporter.gateway_started("http://127.0.0.1:8000", 9_990),
        lambda: reporter.replica_starting(replica),  # type: ignore[arg-type]
        lambda: reporter.replica_ready(replica, 1.5),  # type: ignore[arg-type]
        lambda: reporter.replica_failed(replica, EngineError("boom")),  # type: ignore[arg-type]
        lambda: reporter.replica_event(replica, CRASH),  # type: ignore[arg-type]
        lambda: reporter.replica_event(replica, BACK),  # type: ignore[arg-type]
        lambda: reporter.all_ready("http://127.0.0.1:8000", ["chat"]),
        lambda: reporter.stopping(),
    ]
    for event in events:
        assert_plain(rendered(console, event))
    reporter.replica_loading(replica, 1.0)  # type: ignore[arg-type]  # a spinner, no line
    exited = rendered(console, lambda: reporter.replica_event(replica, CRASH))  # type: ignore[arg-type]
    assert "✗ chat exited (code 1) — restarting in 1s" in exited
    assert f"  │ {LOOKS_LIKE_MARKUP}" in exited  # a crash's last log lines, as they are
    back = rendered(console, lambda: reporter.replica_event(replica, BACK))  # type: ignore[arg-type]
    assert "✓ chat back after restart 1 (ready in 0.5s)" in back
    assert "home [1]" in rendered(console, lambda: reporter.replica_starting(replica))  # type: ignore[arg-type]


def test_an_error_with_its_log_tail_prints_the_lines_as_they_are() -> None:
    error = EngineError("llama.cpp exited with code 1", fix=LOOKS_LIKE_MARKUP, log_tail=["[dim] x", "[/] y"])
    text = rendered(err_console, lambda: print_error(error))
    assert "error: llama.cpp exited with code 1" in text
    assert f"fix: {LOOKS_LIKE_MARKUP}" in text
    assert "  │ [dim] x" in text and "  │ [/] y" in text  # the engine's own words, once, with one prefix
    assert not TAG.search(text.replace("[dim] x", "").replace("[/] y", ""))


def test_plan_and_commands_print_without_markup(tmp_path: Path) -> None:
    stack = parse_stack(
        "services:\n"
        "  good:\n    engine: sim\n    model: sim\n"
        "  bad:\n    engine: llamacpp\n    model: /models/x.gguf\n    tp: 2\n    gpus: [0, 1]\n",
        source="test",
        environ={},
    )
    plan = make_plan(stack, parse_inventory("2xH100"))
    text = rendered(console, lambda: print_plan(console, plan, "stack [test].yaml"))
    assert_plain(text)
    assert "stack [test].yaml" in text
    commands = rendered(console, lambda: print_commands(plan, environ={}, driver_cuda=None))
    assert_plain(commands)
    assert "cannot build it: llama.cpp (llama-cpp-python) has no tensor parallelism" in commands


def test_smoke_results_print_without_markup() -> None:
    ok = SmokeResult("chat", True, "[hi]", "ok", 1.0, 0.5)
    failed = SmokeResult("chat", False, "", f"HTTP 500: {LOOKS_LIKE_MARKUP}", 1.0, 0.5)
    assert "✓ chat answered" in rendered(console, lambda: print_smoke_result(ok))
    text = rendered(console, lambda: print_smoke_result(failed))
    assert_plain(text)
    assert f"✗ chat: HTTP 500: {LOOKS_LIKE_MARKUP}" in text


def test_status_shows_a_last_error_that_looks_like_markup(replica: object) -> None:
    failed = replica.state.model_copy(update={"status": ReplicaStatus.FAILED})  # type: ignore[attr-defined]
    crashed = failed.with_event(CRASH)
    text = rendered(console, lambda: show_replicas(console, [crashed], None))
    assert_plain(text)
    assert f"why not ready\n chat  {LOOKS_LIKE_MARKUP}" in text
    assert "recent events" in text and f"chat  {CRASH.message}" in text


def test_no_cli_module_writes_markup_tags() -> None:
    """The consoles print with markup off, so a tag in a message would reach the terminal as is."""
    assert not console._markup and not err_console._markup
    for path in sorted(CLI_SOURCES.glob("*.py")):
        found = TAG.search(path.read_text())
        assert found is None, f"{path.name} still writes rich markup: {found.group(0)!r}"

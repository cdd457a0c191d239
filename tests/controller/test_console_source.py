"""The controller's side of the console: the `--explore-tp` table of the running plan is the CLI's."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from typer.testing import CliRunner

from servestack.cli import load_commands
from servestack.cli.planning import plan_for_up
from servestack.controller.console_source import ControllerConsole
from servestack.gpus import parse_inventory
from servestack.settings import Settings
from servestack.stack import load_stack

STACK = """
version: 1
services:
  deepseek:
    engine: sglang
    model: deepseek-ai/DeepSeek-V2.5-1210
    gpus: [0, 1, 2, 3]
"""


def test_the_console_explores_tp_sizes_as_plan_explore_tp_does(tmp_path: Path) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text(STACK)
    plan = plan_for_up(load_stack(path), force=True, inventory=parse_inventory("4xH200"))
    controller = SimpleNamespace(plan=plan, settings=Settings(home=tmp_path), environ={})
    console = ControllerConsole(cast(Any, controller))
    args = ["plan", "-f", str(path), "--gpus", "4xH200", "--explore-tp", "deepseek", "--json"]
    printed = CliRunner().invoke(load_commands(), args)
    assert printed.exit_code == 0, printed.output
    explored = console.explore_tp("deepseek")
    assert explored == json.loads(printed.output)
    assert [row["verdict"] for row in explored["rows"]] == ["does-not-fit", "does-not-fit", "invalid", "fits"]

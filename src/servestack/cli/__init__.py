"""The command line: parse, call, render. Each command lives in its own module."""

from servestack.cli import basics, images, inspect, lifecycle, plan, pull, sim, smoke  # noqa: F401  (registers commands)
from servestack.cli.app import app, main

__all__ = ["app", "main"]

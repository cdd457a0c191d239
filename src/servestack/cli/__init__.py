"""The command line: parse, call, render. Each command lives in its own module."""

from servestack.cli import basics, inspect, keys, lifecycle, usage  # noqa: F401  (registers the commands)
from servestack.cli.app import app, main

__all__ = ["app", "main"]

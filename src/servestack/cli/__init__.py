"""The command line: parse, call, render. Each command lives in its own module."""

from servestack.cli import (  # noqa: F401  (registers the commands)
    basics,
    bench,
    images,
    inspect,
    keys,
    lifecycle,
    logs,
    plan,
    pull,
    sim,
    smoke,
    usage,
)
from servestack.cli.app import app, main

__all__ = ["app", "main"]

"""`servestack keys create|list|revoke`: API keys for the gateway, kept in the state dir.

The running gateway picks changes up within a second. A secret is printed once, at creation;
servestack keeps only its hash.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import orjson
import typer

from servestack.cli.app import app, console, identifier_column, print_table, settings, styled
from servestack.cli.when import format_time, parse_when
from servestack.errors import ServestackError

if TYPE_CHECKING:
    from servestack.gateway.admission.keys import ApiKey, KeyStore

keys_app = typer.Typer(help="Create, list and revoke API keys for the gateway.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _store() -> KeyStore:
    from servestack.gateway.admission.keys import KeyStore

    return KeyStore(settings().keys_db)


@keys_app.command("create")
def create(
    name: str = typer.Option(..., "--name", help="Who or what the key is for (unique among active keys)."),
    models: str | None = typer.Option(None, "--models", help="Comma-separated model names it may use (default: all)."),
    rpm: int | None = typer.Option(None, "--rpm", min=1, help="Requests per minute."),
    tpm: int | None = typer.Option(None, "--tpm", min=1, help="Tokens (prompt + completion) per minute."),
    max_concurrent: int | None = typer.Option(None, "--max-concurrent", min=1, help="Requests at once."),
    expires: str | None = typer.Option(None, "--expires", help="2026-12-31, 2026-12-31T18:00, or 30d / 12h."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Create a key and print its secret (shown only this once)."""
    now = time.time()
    expires_at = parse_when(expires, now, future=True) if expires else None
    if expires_at is not None and expires_at <= now:
        raise ServestackError(f"--expires {expires} is in the past")
    allowed = [m.strip() for m in models.split(",") if m.strip()] if models else None
    store = _store()
    try:
        key, secret = store.create(
            name, models=allowed, rpm=rpm, tpm=tpm, max_concurrent=max_concurrent, expires_at=expires_at
        )
    finally:
        store.close()
    if as_json:
        typer.echo(orjson.dumps({"key": key.describe(now), "secret": secret}).decode())
        return
    console.print(styled("created key ", (key.name, "bold"), f" ({key.id})"))
    typer.echo(secret)
    console.print("this is the only time the secret is shown: store it now", style="yellow")


@keys_app.command("list")
def list_keys(as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON.")) -> None:
    """List keys (never their secrets)."""
    store = _store()
    try:
        keys = store.list()
    finally:
        store.close()
    now = time.time()
    if as_json:
        typer.echo(orjson.dumps([k.describe(now) for k in keys]).decode())
        return
    if not keys:
        console.print("no keys yet (`servestack keys create --name NAME`)")
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    identifier_column(table, "ID", (k.id for k in keys))
    identifier_column(table, "NAME", (k.name for k in keys))
    identifier_column(table, "KEY", (_shown_secret(k) for k in keys))
    identifier_column(table, "MODELS", (m for k in keys for m in k.models or ["all"]))
    for column in ("LIMITS", "EXPIRES", "STATUS", "CREATED"):
        table.add_column(column)
    for key in keys:
        status = key.status(now)
        style = {"active": "green", "revoked": "dim", "expired": "yellow"}[status]
        table.add_row(
            key.id,
            key.name,
            _shown_secret(key),
            "\n".join(sorted(key.models)) if key.models is not None else "all",
            _limits(key),
            format_time(key.expires_at),
            styled((status, style)),
            format_time(key.created_at),
        )
    print_table(table)


def _shown_secret(key: ApiKey) -> str:
    return f"sk-ss-…{key.hint}"


def _limits(key: ApiKey) -> str:
    limits = [(key.rpm, "rpm"), (key.tpm, "tpm"), (key.max_concurrent, "at once")]
    return "\n".join(f"{value} {unit}" for value, unit in limits if value) or "-"


@keys_app.command("revoke")
def revoke(key: str = typer.Argument(..., help="The key's name or id.")) -> None:
    """Revoke a key: the gateway refuses it within a second."""
    store = _store()
    try:
        revoked = store.revoke(key)
    finally:
        store.close()
    console.print(styled("revoked key ", (revoked.name, "bold"), f" ({revoked.id})"))

"""The `gateway:` section's production settings: keys, limits, timeouts, usage, metrics, tracing, logs.

Kept apart from `schema.py` so the service schema stays readable; `GatewayConfig` there holds one
field per section below. Everything defaults to what a single-user laptop wants: no keys, no queue,
usage and metrics on, tracing and JSON logs off.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator

from servestack.stack.strict import Strict as _Strict

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}

Seconds = Annotated[float, Field(gt=0)]


class AuthConfig(_Strict):
    """API keys (`servestack keys create`). When `enabled`, every route but /health needs a key."""

    enabled: bool = False


class QueueConfig(_Strict):
    """A bounded queue in front of one model's replicas."""

    max_concurrent: Annotated[int, Field(ge=1)] = Field(description="Requests sent upstream at once for the model.")
    max_waiting: Annotated[int, Field(ge=0)] = Field(default=100, description="Requests that may wait; then 503.")
    timeout: Seconds = Field(default=60.0, description="Seconds a request may wait for its turn; then 503.")


class LimitsConfig(_Strict):
    max_body_bytes: int = Field(default=32 * 2**20, gt=0, description="Request body cap (413 above); 32MiB etc.")
    max_header_bytes: int = Field(
        default=64 * 2**10, ge=1024, description="Cap on a request's line and headers (431 above); 64KiB etc."
    )
    queue: QueueConfig | None = Field(default=None, description="A queue per model (applies to every model).")
    model_queues: dict[str, QueueConfig] = Field(default_factory=dict, description="Per-model queue overrides.")

    @field_validator("max_body_bytes", "max_header_bytes", mode="before")
    @classmethod
    def _size(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        match = _SIZE.match(value)
        if match is None:
            raise ValueError("expected a size such as 1048576, 512KiB or 32MiB")
        return int(float(match.group(1)) * _UNITS[(match.group(2) or "B").lower()])


class TimeoutsConfig(_Strict):
    headers: Seconds = Field(default=10.0, description="A client's request line and headers must arrive within this.")
    body: Seconds = Field(default=60.0, description="A client's request body must arrive within this.")
    connect: Seconds = Field(default=5.0, description="Connecting to an engine.")
    idle: Seconds = Field(
        default=600.0, description="Longest silence from an engine while it answers (enforced within a quarter more)."
    )
    first_byte: float | Literal["auto"] = Field(
        default="auto",
        description="Longest wait for an engine's answer to begin (a stream's first chunk; a whole answer, which "
        "engines send at once); past it the request goes to another replica, or gets a 504. `auto`: 30 s + 10 ms "
        "per prompt character + (whole answers) 250 ms per token it may generate, set again while the replica "
        "sends anything to anyone (a queue is not a hang); a number: fixed seconds; 0: off.",
    )

    @field_validator("first_byte", mode="before")
    @classmethod
    def _auto_or_seconds(cls, value: object) -> object:
        if value == "auto" or (isinstance(value, int | float) and not isinstance(value, bool) and value >= 0):
            return value
        raise ValueError("expected auto, a number of seconds, or 0 (off)")


class UsageConfig(_Strict):
    """The usage ledger: one row per request in `<state dir>/usage.db`."""

    enabled: bool = True
    flush_interval: Annotated[float, Field(gt=0, le=10)] = Field(
        default=0.2, description="Seconds a finished request may wait before its row is committed."
    )


class MetricsConfig(_Strict):
    """Prometheus `/metrics`, including the engines' own metrics under servestack names."""

    enabled: bool = True


class ConsoleConfig(_Strict):
    """The web console at /ui (docs/console.md)."""

    enabled: bool = True
    actions: Literal["admin", "localhost"] = Field(
        default="admin",
        description="Who may start, stop, restart, load and unload from the console: `admin` (the admin key), "
        "`localhost` (also a browser on this machine while gateway.auth is off).",
    )


class TracingConfig(_Strict):
    """OpenTelemetry traces, exported over OTLP (SigNoz, Jaeger, Tempo, an OTel collector)."""

    endpoint: str = Field(min_length=1, description="OTLP endpoint, e.g. http://localhost:4318 (http/protobuf).")
    protocol: Literal["http/protobuf", "grpc"] = "http/protobuf"
    service_name: str = "servestack"
    sample_ratio: Annotated[float, Field(ge=0, le=1)] = 1.0
    headers: dict[str, str] = Field(default_factory=dict, description="Sent with every export (e.g. a token).")
    insecure: bool = Field(default=True, description="gRPC only: plain text instead of TLS.")


class LogsConfig(_Strict):
    """Per-request structured logs (one JSON object per line, with a request id; never a key)."""

    format: Literal["off", "json"] = "off"
    path: str | None = Field(default=None, description="File to append to; default <home>/logs/gateway.jsonl.")

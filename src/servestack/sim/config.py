"""The simulator's settings (`SimConfig`) and its command line (`python -m servestack.sim`).

Every setting is one dataclass field whose metadata holds its flag and help text; the argparse
parser is built from those fields, so the flags and the settings cannot drift apart. Latency
settings are in simulated seconds (scaled by `time_scale`); fault and load timings (`slow_start`, `warmup`,
`crash_after_seconds`, `wake_time`) are wall-clock seconds, since they are about the process, not the model.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from servestack.errors import EngineError


def _opt(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


@dataclass(frozen=True)
class SimConfig:
    models: tuple[str, ...] = _opt(("sim",), "served model name; repeat for aliases (first is the main one)")
    root: str | None = _opt(None, "the model path reported as `root` in /v1/models (default: the main name)")
    host: str = _opt("127.0.0.1", "interface to listen on")
    port: int = _opt(8100, "port to listen on (0: any free port)")
    replica: str | None = _opt(None, "name reported in x-sim-replica and system_fingerprint (default: HOST:PORT)")
    prefill_rate: float = _opt(8000.0, "prompt tokens prefilled per simulated second (whole engine)")
    decode_rate: float = _opt(50.0, "tokens generated per simulated second, per running sequence")
    max_running: int = _opt(32, "sequences running at once; the rest wait in a FIFO queue")
    kv_capacity: int = _opt(131072, "KV cache size in tokens; a request reserves prompt + max_tokens")
    cache_capacity: int | None = _opt(None, "prefix cache size in tokens (default: kv-capacity; 0: off)")
    max_model_len: int = _opt(32768, "longest prompt + max_tokens accepted (longer: HTTP 400)")
    default_max_tokens: int = _opt(16, "tokens generated when a request gives no max_tokens")
    time_scale: float = _opt(1.0, "wall seconds per simulated second (0.01: 100x faster)")
    instant: bool = _opt(False, "answer at once with canned text: no scheduler, no cache, no sleeps")
    error_rate: float = _opt(0.0, "fraction of generation requests answered with HTTP 500")
    crash_after_requests: int | None = _opt(None, "serve N generation requests, exit hard on the next")
    crash_after_seconds: float | None = _opt(None, "exit hard T wall seconds after start")
    hang: bool = _opt(False, "accept generation requests but never answer them (/health stays 200)")
    slow_start: float = _opt(0.0, "keep the port bound but not listening for S seconds (connection refused)")
    warmup: float = _opt(0.0, "after listening, answer /health and requests with 503 for S seconds")
    seed: int = _opt(0, "seed for the error draws and the generated words")
    enable_sleep_mode: bool = _opt(False, "serve vLLM's POST /sleep, POST /wake_up and GET /is_sleeping")
    wake_time: float = _opt(0.5, "wall seconds a /wake_up takes (a cold start takes --slow-start)")

    def __post_init__(self) -> None:
        problems = [message for ok, message in self._checks() if not ok]
        if problems:
            raise EngineError("invalid simulator settings: " + "; ".join(problems))

    def _checks(self) -> list[tuple[bool, str]]:
        return [
            (bool(self.models) and all(self.models), "at least one non-empty model name is needed"),
            (0 <= self.port <= 65535, "port must be 0..65535"),
            (self.prefill_rate > 0, "prefill-rate must be > 0"),
            (self.decode_rate > 0, "decode-rate must be > 0"),
            (self.max_running >= 1, "max-running must be >= 1"),
            (self.kv_capacity >= 1, "kv-capacity must be >= 1"),
            (self.cache_capacity is None or self.cache_capacity >= 0, "cache-capacity must be >= 0"),
            (self.max_model_len >= 2, "max-model-len must be >= 2"),
            (self.default_max_tokens >= 1, "default-max-tokens must be >= 1"),
            (self.time_scale > 0, "time-scale must be > 0"),
            (0.0 <= self.error_rate <= 1.0, "error-rate must be within 0..1"),
            (self.crash_after_requests is None or self.crash_after_requests >= 0, "crash-after-requests must be >= 0"),
            (self.crash_after_seconds is None or self.crash_after_seconds > 0, "crash-after-seconds must be > 0"),
            (self.slow_start >= 0 and self.warmup >= 0, "slow-start and warmup must be >= 0"),
            (self.wake_time >= 0, "wake-time must be >= 0"),
        ]

    @property
    def prefix_cache_capacity(self) -> int:
        return self.kv_capacity if self.cache_capacity is None else self.cache_capacity


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser(prog: str = "python -m servestack.sim") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="A simulated LLM engine with vLLM's HTTP API.")
    for f in fields(SimConfig):
        help_text = f.metadata["help"]
        if f.name == "models":
            parser.add_argument("--model", dest="models", action="append", metavar="NAME", help=help_text)
        elif f.type == "bool":
            parser.add_argument(flag(f.name), action="store_true", help=help_text)
        else:
            kind = _converter(str(f.type))
            metavar = {int: "N", float: "X"}.get(kind, "TEXT")
            parser.add_argument(flag(f.name), type=kind, default=f.default, metavar=metavar, help=help_text)
    return parser


def parse_args(argv: Sequence[str], *, prog: str = "python -m servestack.sim") -> SimConfig:
    """A SimConfig from command-line flags; argparse exits with status 2 on a bad flag."""
    values = vars(build_parser(prog).parse_args(list(argv)))
    values["models"] = tuple(values["models"] or SimConfig.models)
    return SimConfig(**values)


def _converter(annotation: str) -> type:
    for name, kind in (("int", int), ("float", float)):
        if annotation.startswith(name):
            return kind
    return str

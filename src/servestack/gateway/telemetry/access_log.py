"""Structured JSON logs: one line per request (with its request id) and the gateway's own events.

Lines are buffered in memory and written once a second by a background task, so a request costs
one `orjson.dumps`. What a line holds is chosen here, field by field: a key appears by name and
id, never as its secret, and request bodies are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import BinaryIO

import orjson

from servestack.errors import GatewayError
from servestack.gateway.admission.keys import ApiKey
from servestack.gateway.relay.exchange import Exchange

FLUSH_SECONDS = 1.0


class AccessLog:
    def __init__(self, path: Path | None) -> None:
        """`path` None writes to stderr."""
        self.path = path
        self._lines: list[bytes] = []
        self._file: BinaryIO | None = None
        self._task: asyncio.Task[None] | None = None
        self._handler = _JsonHandler(self)

    def request(self, exchange: Exchange) -> None:
        key = exchange.key
        endpoint = exchange.endpoint
        line: dict[str, object] = {
            "ts": time.time(),
            "level": "info",
            "event": "request",
            "request_id": exchange.request_id,
            "path": exchange.path,
            "model": exchange.model,
            "status": exchange.status,
            "stream": exchange.stream,
            "key": key.name if key is not None else None,
            "key_id": key.id if key is not None else None,
            "replica": endpoint.id if endpoint is not None else None,
            "ttft_ms": _ms(exchange.ttft),
            "duration_ms": _ms(exchange.duration),
            "prompt_tokens": exchange.prompt_tokens,
            "completion_tokens": exchange.completion_tokens,
        }
        if exchange.alias:
            line["alias"] = exchange.alias
        if exchange.usage_estimated:
            line["estimated"] = True
        if exchange.error is not None:
            line["error"] = exchange.error.message
        self._lines.append(orjson.dumps(line) + b"\n")

    def refused(
        self,
        method: str,
        path: str,
        error: GatewayError,
        *,
        request_id: str = "",
        key: ApiKey | None = None,
        model: str | None = None,
    ) -> None:
        """A request turned away before it was admitted (a missing or wrong key, a model nobody serves)."""
        line: dict[str, object] = {
            "ts": time.time(),
            "level": "info",
            "event": "request",
            "request_id": request_id,
            "method": method,
            "path": path,
            "status": error.status,
            "error": error.message,
        }
        if key is not None:
            line["key"], line["key_id"] = key.name, key.id
        if model is not None:
            line["model"] = model
        self._lines.append(orjson.dumps(line) + b"\n")

    def event(self, level: str, logger: str, message: str) -> None:
        line = {"ts": time.time(), "level": level, "event": "log", "logger": logger, "message": message}
        self._lines.append(orjson.dumps(line) + b"\n")

    async def start(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab")
        logger = logging.getLogger("servestack.gateway")
        logger.addHandler(self._handler)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)  # the gateway's own events (key reloads, ...) go to this log
        self._task = asyncio.create_task(self._flush_forever())

    async def stop(self) -> None:
        logging.getLogger("servestack.gateway").removeHandler(self._handler)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.flush()
        if self._file is not None:
            self._file.close()

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self.flush()

    def flush(self) -> None:
        if not self._lines:
            return
        lines, self._lines = self._lines, []
        out = self._file if self._file is not None else sys.stderr.buffer
        out.write(b"".join(lines))
        out.flush()


class _JsonHandler(logging.Handler):
    def __init__(self, log: AccessLog) -> None:
        super().__init__(logging.INFO)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        self.log.event(record.levelname.lower(), record.name, record.getMessage())


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)

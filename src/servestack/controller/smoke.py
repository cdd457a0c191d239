"""`smoke`: start one service in a throwaway instance, send it one real request, stop it.

The instance is isolated (its own state dir and a free gateway port), so a smoke test can run
beside a live `servestack up` without touching it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any

import aiohttp

from servestack.controller.controller import Controller, Reporter
from servestack.errors import EngineError
from servestack.plan import Plan
from servestack.settings import Settings
from servestack.stack import Stack
from servestack.supervisor import free_port

PROMPT = "Say hi in one short sentence."
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=300)


@dataclass
class SmokeResult:
    service: str
    ok: bool
    answer: str
    detail: str
    seconds_to_ready: float
    seconds_to_answer: float


async def smoke_service(plan: Plan, settings: Settings, name: str, reporter: Reporter) -> SmokeResult:
    """Start `name` alone, ask it one chat question through the gateway, stop it."""
    home = settings.home / "smoke" / f"{name}-{time.time_ns()}"
    isolated = settings.model_copy(update={"home": home})
    port = free_port("127.0.0.1")
    stack = _with_gateway(plan.stack, port)
    controller = Controller(replace(plan, stack=stack), isolated, reporter, stack_label=f"smoke {name}")
    stop = asyncio.Event()
    began = time.monotonic()
    running = asyncio.create_task(controller.run(stop, [name]))
    try:
        await _wait_ready(controller, name, running)
        ready_after = time.monotonic() - began
        model = stack.served_names(name)[0]
        status, payload = await _ask(f"http://127.0.0.1:{port}/v1/chat/completions", model)
        answer_after = time.monotonic() - began - ready_after
    finally:
        stop.set()
        await asyncio.gather(running, return_exceptions=True)
    ok, answer, detail = judge(status, payload)
    return SmokeResult(name, ok, answer, detail, ready_after, answer_after)


def judge(status: int, payload: Any) -> tuple[bool, str, str]:
    """Is this a valid chat completion with a non-empty answer? (ok, answer, why not)."""
    if status != 200:
        return False, "", f"HTTP {status}: {str(payload)[:300]}"
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return False, "", f"not a chat completion: {str(payload)[:300]}"
    if not isinstance(content, str) or not content.strip():
        return False, "", "the answer is empty"
    return True, content.strip(), "ok"


def _with_gateway(stack: Stack, port: int) -> Stack:
    data = stack.model_dump()
    data["gateway"] = {**data["gateway"], "host": "127.0.0.1", "port": port}
    return Stack.model_validate(data)


async def _wait_ready(controller: Controller, name: str, running: asyncio.Task[None]) -> None:
    while not any(e.ready for e in controller.table.endpoints() if e.service == name):
        if running.done():
            running.result()  # the start failed: raise its EngineError
            raise EngineError(f"{name} stopped before it was ready")
        await asyncio.sleep(0.05)


async def _ask(url: str, model: str) -> tuple[int, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 24}
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session, session.post(url, json=body) as resp:
        try:
            return resp.status, await resp.json(content_type=None)
        except ValueError:
            return resp.status, await resp.text()

"""The `gateway:` production settings in the stack file: defaults, sizes, and clear errors."""

from __future__ import annotations

import pytest

from servestack.errors import StackError
from servestack.stack import parse_stack

SERVICES = "services:\n  a:\n    engine: llamacpp\n    model: x.gguf\n    served_names: [a, a-chat]\n"


def parse(gateway: str) -> object:
    return parse_stack("gateway:\n" + gateway + SERVICES, source="s.yaml", environ={"TOKEN": "t0k"})


def test_defaults_keep_keys_and_tracing_off() -> None:
    gateway = parse_stack(SERVICES, source="s.yaml", environ={}).gateway
    assert not gateway.auth.enabled and gateway.tracing is None and gateway.logs.format == "off"
    assert gateway.usage.enabled and gateway.metrics.enabled and gateway.limits.queue is None


def test_full_gateway_section() -> None:
    gateway = parse(
        "  auth: {enabled: true}\n"
        "  aliases: {gpt-4o-mini: a}\n"
        "  limits: {max_body_bytes: 2MiB, queue: {max_concurrent: 4}, model_queues: {a-chat: {max_concurrent: 1}}}\n"
        "  timeouts: {headers: 5, connect: 2, idle: 120, first_byte: 30}\n"
        "  tracing: {endpoint: 'http://signoz:4318', headers: {signoz-access-token: '${TOKEN}'}}\n"
        "  logs: {format: json, path: /var/log/gw.jsonl}\n"
    ).gateway  # type: ignore[attr-defined]
    assert gateway.limits.max_body_bytes == 2 * 2**20 and gateway.limits.queue.max_waiting == 100
    assert gateway.tracing.headers == {"signoz-access-token": "t0k"} and gateway.timeouts.body == 60
    default = parse("  auth: {enabled: true}\n").gateway  # type: ignore[attr-defined]
    assert gateway.timeouts.first_byte == 30 and default.timeouts.first_byte == "auto"


@pytest.mark.parametrize(
    ("gateway", "message"),
    [
        ("  auth: {enable: true}\n", "gateway.auth.enable: unknown key (did you mean 'enabled'?)"),
        ("  aliases: {x: nope}\n", "'x' points to 'nope', which no service serves"),
        ("  aliases: {a: a-chat}\n", "'a' is already a served name"),
        ("  limits: {max_body_bytes: lots}\n", "expected a size such as"),
        ("  limits: {model_queues: {zz: {max_concurrent: 1}}}\n", "no service serves 'zz'"),
        ("  tracing: {endpoint: x, protocol: thrift}\n", "gateway.tracing.protocol"),
        ("  limits: {queue: {max_concurrent: 0}}\n", "gateway.limits.queue.max_concurrent"),
    ],
)
def test_mistakes_are_named(gateway: str, message: str) -> None:
    with pytest.raises(StackError) as error:
        parse(gateway)
    assert message in error.value.message

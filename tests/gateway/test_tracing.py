"""Tracing: a gateway span and an upstream span per request (with a first-token event), children
of the client's trace, and the upstream span's context as the `traceparent` the engine sees."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from servestack.errors import ServestackError
from servestack.gateway.telemetry.tracing import build_tracer_provider
from servestack.stack import TracingConfig
from tests.gateway.prod_harness import production_gateway

pytestmark = pytest.mark.anyio

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN_ID = "b7ad6b7169203331"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def provider_for(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


async def test_spans_follow_the_client_trace_and_reach_the_engine(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    traceparent = f"00-{TRACE_ID}-{CLIENT_SPAN_ID}-01"
    async with (
        production_gateway(tmp_path / "home", tracer_provider=provider_for(exporter)) as gw,
        gw.client() as client,
    ):
        streamed = await client.post(
            "/v1/chat/completions", json={**CHAT, "stream": True}, headers={"traceparent": traceparent}
        )
        assert streamed.status_code == 200
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    spans = exporter.get_finished_spans()
    assert len(spans) == 4
    gateway_span = next(s for s in spans if s.kind is SpanKind.SERVER and s.context.trace_id == int(TRACE_ID, 16))
    upstream_span = next(s for s in spans if s.kind is SpanKind.CLIENT and s.parent == gateway_span.context)
    assert gateway_span.parent is not None and gateway_span.parent.span_id == int(CLIENT_SPAN_ID, 16)
    assert gateway_span.name == "POST /v1/chat/completions"
    assert gateway_span.attributes["gen_ai.request.model"] == "tiny"
    assert gateway_span.attributes["gen_ai.usage.output_tokens"] == 3
    assert upstream_span.attributes["servestack.replica"] == "tiny.0"
    [first_token] = upstream_span.events
    assert first_token.name == "first_token"
    assert gateway_span.start_time <= upstream_span.start_time <= first_token.timestamp <= upstream_span.end_time
    assert upstream_span.end_time <= gateway_span.end_time  # type: ignore[operator]

    # The engine sees the upstream span as its parent, in the client's trace.
    seen = gw.engine.headers[0]["traceparent"]
    assert seen == f"00-{TRACE_ID}-{upstream_span.context.span_id:016x}-01"
    # A request without a trace starts one; the engine still sees the gateway's upstream span.
    other_trace = {s.context.trace_id for s in spans} - {int(TRACE_ID, 16)}
    assert len(other_trace) == 1
    assert gw.engine.headers[1]["traceparent"].split("-")[1] == f"{other_trace.pop():032x}"


async def test_failed_requests_are_error_spans(tmp_path: Path, exporter: InMemorySpanExporter) -> None:
    async with production_gateway(tmp_path / "home", tracer_provider=provider_for(exporter)) as gw:
        gw.table.get("tiny.0").base_url = "http://127.0.0.1:1"  # type: ignore[union-attr]
        async with gw.client() as client:
            assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 503
    spans = exporter.get_finished_spans()
    assert {s.status.status_code.name for s in spans} == {"ERROR"}
    assert {s.attributes["http.response.status_code"] for s in spans if s.kind is SpanKind.SERVER} == {503}


def test_otlp_exporter_is_built_from_the_stack_file() -> None:
    provider = build_tracer_provider(TracingConfig(endpoint="http://127.0.0.1:4318", service_name="gw"))
    assert provider.resource.attributes["service.name"] == "gw"
    provider.shutdown()
    if importlib.util.find_spec("opentelemetry.exporter.otlp.proto.grpc") is None:
        with pytest.raises(ServestackError, match="gRPC exporter"):
            build_tracer_provider(TracingConfig(endpoint="http://127.0.0.1:4317", protocol="grpc"))

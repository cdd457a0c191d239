"""OpenTelemetry spans per request, and W3C trace context passed on to the engine.

Per request: a SERVER span for the gateway (a child of the client's `traceparent`, if it sent
one) and a CLIENT span for the call to the engine, with a `first_token` event. The engine receives
the CLIENT span's context as `traceparent`, so its own spans (vLLM and SGLang can emit them) join
the same trace. Only built when the stack file configures tracing; the OpenTelemetry SDK and the
OTLP exporter are the `otel` extra. Spans carry no secret: the key's name, never the key.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from servestack import __version__
from servestack.errors import ServestackError
from servestack.gateway.fleet.endpoint import Endpoint
from servestack.gateway.relay.exchange import Exchange
from servestack.stack import TracingConfig

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

TRACE_HEADERS = (b"traceparent", b"tracestate")


class Tracing:
    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._trace = trace
        self.provider = provider
        self.tracer = provider.get_tracer("servestack.gateway", __version__)
        self.propagator = TraceContextTextMapPropagator()
        self._offset_ns = time.time_ns() - time.monotonic_ns()

    def _ns(self, monotonic: float) -> int:
        return int(monotonic * 1e9) + self._offset_ns

    def begin(self, exchange: Exchange, method: str = "POST") -> None:
        """Open the gateway's span for `exchange`."""
        carrier = {name.decode(): value.decode("latin-1") for name, value in exchange.headers if name in TRACE_HEADERS}
        parent = self.propagator.extract(carrier) if carrier else None
        span = self.tracer.start_span(
            f"{method} {exchange.path}",
            context=parent,
            kind=self._trace.SpanKind.SERVER,
            start_time=self._ns(exchange.started),
            attributes={
                "http.request.method": method,
                "http.route": exchange.path,
                "gen_ai.request.model": exchange.model,
                "servestack.request_id": exchange.request_id,
                "servestack.stream": exchange.stream,
            },
        )
        exchange.spans = [span, None]

    def upstream(self, exchange: Exchange, endpoint: Endpoint) -> None:
        """Open the span of the call to `endpoint`; the engine will see it as its parent."""
        if not exchange.spans:
            return
        gateway_span = exchange.spans[0]
        span = self.tracer.start_span(
            f"upstream {endpoint.service}",
            context=self._trace.set_span_in_context(gateway_span),
            kind=self._trace.SpanKind.CLIENT,
            attributes={
                "server.address": endpoint.base_url,
                "servestack.replica": endpoint.id,
                "servestack.engine": endpoint.engine,
                "url.path": exchange.path,
            },
        )
        exchange.spans[1] = span
        carrier: dict[str, str] = {}
        self.propagator.inject(carrier, context=self._trace.set_span_in_context(span))
        headers = [(name, value) for name, value in exchange.headers if name not in TRACE_HEADERS]
        headers += [(name.encode(), value.encode()) for name, value in carrier.items()]
        exchange.headers = headers

    def finish(self, exchange: Exchange) -> None:
        if not exchange.spans:
            return
        gateway_span, upstream_span = exchange.spans
        end = self._ns(exchange.finished_at or time.monotonic())
        error = (exchange.status or 0) >= 500
        status_code = self._trace.StatusCode.ERROR if error else self._trace.StatusCode.UNSET
        if upstream_span is not None:
            if exchange.first_byte_at is not None:
                upstream_span.add_event("first_token", timestamp=self._ns(exchange.first_byte_at))
            if exchange.status is not None:
                upstream_span.set_attribute("http.response.status_code", exchange.status)
            upstream_span.set_status(status_code)
            upstream_span.end(end_time=end)
        attributes: dict[str, Any] = {"http.response.status_code": exchange.status or 0}
        if exchange.key is not None:
            attributes["servestack.key"] = exchange.key.name
        if exchange.prompt_tokens is not None:
            attributes["gen_ai.usage.input_tokens"] = exchange.prompt_tokens
        if exchange.completion_tokens is not None:
            attributes["gen_ai.usage.output_tokens"] = exchange.completion_tokens
        if exchange.alias:
            attributes["servestack.alias"] = exchange.alias
        gateway_span.set_attributes(attributes)
        gateway_span.set_status(status_code)
        gateway_span.end(end_time=end)

    def shutdown(self) -> None:
        self.provider.shutdown()


def build_tracer_provider(config: TracingConfig) -> TracerProvider:
    """An SDK tracer provider that batches spans to the configured OTLP endpoint."""
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    except ImportError:
        raise ServestackError(
            "tracing is configured (gateway.tracing) but the OpenTelemetry SDK is not installed",
            fix="pip install 'servestack[otel]'",
        ) from None
    provider = TracerProvider(
        resource=Resource.create({"service.name": config.service_name, "service.version": __version__}),
        sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
    )
    provider.add_span_processor(BatchSpanProcessor(_exporter(config)))
    return provider


def _exporter(config: TracingConfig) -> Any:
    if config.protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
        except ImportError:
            raise ServestackError(
                "gateway.tracing.protocol grpc needs the OTLP gRPC exporter",
                fix="pip install opentelemetry-exporter-otlp-proto-grpc, or use protocol: http/protobuf",
            ) from None
        return GrpcExporter(endpoint=config.endpoint, headers=dict(config.headers), insecure=config.insecure)
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
    except ImportError:
        raise ServestackError(
            "tracing is configured (gateway.tracing) but the OTLP exporter is not installed",
            fix="pip install 'servestack[otel]'",
        ) from None
    endpoint = config.endpoint.rstrip("/")
    if not endpoint.endswith("/v1/traces"):
        endpoint += "/v1/traces"
    return HttpExporter(endpoint=endpoint, headers=dict(config.headers))

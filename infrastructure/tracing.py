"""OpenTelemetry traces, exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

Unset, nothing is installed: the code's spans go to OpenTelemetry's no-op tracer and no request
middleware is added, so tracing costs nothing measurable. Set, each process that does work
(`chronicle serve`, its projection process, a CLI command) installs a tracer provider with a
batching OTLP exporter, and Litestar's OpenTelemetry plugin opens a span per request, under
which the command's span and the group commit's follow."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from opentelemetry import trace

from infrastructure.settings import Settings


def chronicle_version() -> str:
    try:
        return version("chronicle")
    except PackageNotFoundError:
        return "unknown"


_installed = False
"""Set by `install_tracing`, the only place Chronicle installs a provider. A flag, not a look at
`trace.get_tracer_provider()`: that reads the environment on every call (≈ 3 µs, twice a post).
A provider installed from outside (`opentelemetry-instrument`) therefore does not turn on the
command and request spans: tracing is configured with `OTEL_EXPORTER_OTLP_ENDPOINT`."""


def tracing_installed() -> bool:
    """Whether this process installed a tracer provider. The hot paths (each command, each
    request) open no span at all when it did not: OpenTelemetry's no-op span still creates a span
    object and attaches a context, which cost a few per cent of a post's CPU."""
    return _installed


def install_tracing(settings: Settings, role: str) -> Any:
    """Installs the process's tracer provider; returns it (to `shutdown()`, which flushes the
    last spans), or None when tracing is off."""
    if settings.otlp_endpoint is None:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource({"service.name": "chronicle", "service.version": chronicle_version(), "chronicle.process": role})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{settings.otlp_endpoint}/v1/traces")))
    trace.set_tracer_provider(provider)
    global _installed
    _installed = True
    return provider


def request_tracing(settings: Settings) -> list[Any]:
    """Litestar's OpenTelemetry plugin when tracing is on; no plugin otherwise. Request bodies
    and headers are never recorded; the span is renamed after the route once it is routed."""
    if settings.otlp_endpoint is None:
        return []
    from litestar.enums import ScopeType
    from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin

    config = OpenTelemetryConfig(
        exclude_spans=["receive", "send"],
        scopes={ScopeType.HTTP},
        scope_span_details_extractor=_span_details,
        server_request_hook_handler=_without_query,
    )
    return [OpenTelemetryPlugin(config)]


def _without_query(span: Any, scope: Any) -> None:
    """The instrumentation records the URL with its query string, where a token may travel:
    the recorded URL and target stop at the path."""
    if span.is_recording():
        path = scope.get("path", "")
        span.set_attribute("http.target", path)
        host = dict(scope.get("headers", ())).get(b"host", b"").decode("latin-1")
        span.set_attribute("http.url", f"{scope.get('scheme', 'http')}://{host}{path}")


def _span_details(scope: Any) -> tuple[str, dict[str, Any]]:
    """The span's first name: the method only, never the raw path (it carries ids and, on
    streams, the token)."""
    method = str(scope.get("method", "WS"))
    return method, {}

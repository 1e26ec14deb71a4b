"""The correlation id of each request, and its access-log line.

A request's correlation id is its `X-Request-ID` (1-64 letters, digits, `.`, `_`, `:` or `-`;
anything else is refused with a 400 problem), else the trace id of a valid W3C `traceparent`,
else a new id. It is bound to every log line written while the request is handled, recorded on
the events its commands append, set on its trace's spans, and echoed as `X-Request-ID`.

This wraps Litestar's whole ASGI handler (outside routing, authentication and CSRF, so 404s,
405s, 401s and 403s are logged and counted too), records each HTTP request's Prometheus metrics
(`http_metrics.py`), and writes one access line per HTTP request
when `CHRONICLE_ACCESS_LOG` is on: method, route template (never the raw path, which carries
ids), status, duration, user id, correlation id, bytes."""

from __future__ import annotations

import logging
import re
from time import perf_counter
from typing import Any

import msgspec
import structlog
from litestar import Litestar
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from opentelemetry import trace

from domain.identity import new_id
from infrastructure.tracing import tracing_installed
from infrastructure.web.http_metrics import IN_PROGRESS, record

log = structlog.stdlib.get_logger("chronicle.access")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
CORRELATION_ID = "correlation_id"
"""The key under which the correlation id is kept in the connection's state."""
SERVER_SEND = "server_send"
"""The scope-state key under which a WebSocket handler finds the `send` that reached this
middleware: the ASGI server's own, since Litestar wraps it only when it has `before_send` hooks.
Streams send their frames through it and skip the wrappers inside (see `streams.FrameSender`)."""


def correlation_id_of(scope: Scope) -> str | None:
    """The correlation id the middleware chose for this connection (None outside a request)."""
    state = scope.get("state")
    return state.get(CORRELATION_ID) if state else None


def choose_correlation_id(headers: list[tuple[bytes, bytes]]) -> tuple[str, bool]:
    """The correlation id for these request headers, and whether they were acceptable."""
    request_id = traceparent = None
    for name, value in headers:
        if name == b"x-request-id":
            request_id = value
        elif name == b"traceparent":
            traceparent = value
    if request_id is not None:
        text = request_id.decode("latin-1")
        return (text, True) if _REQUEST_ID.fullmatch(text) else (str(new_id()), False)
    if traceparent is not None:
        found = _TRACEPARENT.fullmatch(traceparent.decode("latin-1").strip())
        if found and found.group(1) != "0" * 32:
            return found.group(1), True
    return str(new_id()), True  # an invalid traceparent is ignored, as W3C Trace Context says


_BAD_REQUEST_ID = msgspec.json.encode(
    {
        "type": "about:blank",
        "title": "Bad Request",
        "status": 400,
        "detail": "X-Request-ID must be 1 to 64 letters, digits, '.', '_', ':' or '-'",
        "errors": [{"field": "X-Request-ID", "message": "1 to 64 letters, digits, '.', '_', ':' or '-'"}],
    }
)


class RequestContext:
    """ASGI middleware around the app's handler (see `attach`)."""

    def __init__(self, app: ASGIApp, access_log: bool) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        correlation_id, acceptable = choose_correlation_id(scope["headers"])  # type: ignore[arg-type]
        if not acceptable and scope["type"] == "http":
            started = perf_counter()
            await _refuse(correlation_id, send)
            record(scope["method"], "unmatched", 400, perf_counter() - started)  # type: ignore[typeddict-item]
            return
        scope["state"][CORRELATION_ID] = correlation_id  # type: ignore[index]
        if scope["type"] == "websocket":
            scope["state"][SERVER_SEND] = send  # type: ignore[index]
        echoed = (b"x-request-id", correlation_id.encode())
        structlog.contextvars.bind_contextvars(correlation_id=correlation_id)
        started = perf_counter()
        facts: dict[str, Any] = {"status": 500, "bytes": 0, "trace_id": None}

        async def send_with_id(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start" or kind == "websocket.accept":
                message["headers"] = [*message.get("headers", ()), echoed]  # type: ignore[typeddict-unknown-key]
                facts["status"] = message.get("status", 101)
                _name_span(scope, correlation_id, facts)
            elif kind == "http.response.body":
                facts["bytes"] += len(message.get("body", b""))
            await send(message)

        http = scope["type"] == "http"
        if http:
            IN_PROGRESS.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.unbind_contextvars("correlation_id")
            if http:
                IN_PROGRESS.dec()
                record(scope["method"], scope.get("path_template", "unmatched"), facts["status"], perf_counter() - started)  # type: ignore[typeddict-item]
            if self.access_log and scope["type"] == "http" and log.is_enabled_for(logging.INFO):
                user = scope.get("user")
                log.info(
                    "request",
                    method=scope["method"],  # type: ignore[typeddict-item]
                    route=scope.get("path_template", "unmatched"),
                    status=facts["status"],
                    duration_ms=round((perf_counter() - started) * 1000, 2),
                    user_id=str(user.id) if user is not None and hasattr(user, "id") else None,
                    correlation_id=correlation_id,
                    bytes=facts["bytes"],
                    **({"trace_id": facts["trace_id"]} if facts["trace_id"] else {}),
                )


def _name_span(scope: Scope, correlation_id: str, facts: dict[str, Any]) -> None:
    """Names the request's span after its route template (known only once routed), and links
    it to the correlation id; remembers its trace id for the access line."""
    if not tracing_installed():
        return
    span = trace.get_current_span()
    if not span.is_recording():
        return
    route = scope.get("path_template", "unmatched")
    span.update_name(f"{scope.get('method', 'WS')} {route}")
    span.set_attribute("http.route", route)
    span.set_attribute("chronicle.correlation_id", correlation_id)
    facts["trace_id"] = format(span.get_span_context().trace_id, "032x")


async def _refuse(correlation_id: str, send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(_BAD_REQUEST_ID)).encode()),
                (b"x-request-id", correlation_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _BAD_REQUEST_ID, "more_body": False})
    log.info("request refused: invalid X-Request-ID", status=400, correlation_id=correlation_id)


def attach(app: Litestar, access_log: bool) -> Litestar:
    """Wraps the app's ASGI handler, which Litestar has already wrapped in its exception
    handler, CORS and (when tracing) OpenTelemetry's middleware."""
    app.asgi_handler = RequestContext(app.asgi_handler, access_log)
    return app

"""Runs a command on behalf of an HTTP request: the authenticated user is the actor, and the
request's correlation id (its valid `X-Request-ID` or `traceparent`, or a new id: see
`request_context`) is recorded on every event; the command gets a span of its own when tracing is on."""

from __future__ import annotations

from typing import Any

from litestar import Request
from opentelemetry import trace

from application.command_bus import CommandBus, Outcome
from infrastructure.tracing import tracing_installed
from infrastructure.web.request_context import correlation_id_of

tracer = trace.get_tracer("chronicle.commands")


async def execute(bus: CommandBus, request: Request[Any, Any, Any], command: Any) -> Outcome:
    user = request.scope.get("user")
    actor = str(user.id) if user is not None else "anonymous"
    correlation_id = correlation_id_of(request.scope)
    if not tracing_installed():
        return await bus.execute(command, actor, correlation_id)
    with tracer.start_as_current_span(f"command {type(command).__name__}") as span:
        if span.is_recording():
            span.set_attribute("chronicle.correlation_id", correlation_id or "")
            span.set_attribute("chronicle.actor_id", actor)
        return await bus.execute(command, actor, correlation_id)

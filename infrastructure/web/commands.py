"""Runs a command on behalf of an HTTP request: the authenticated user is the actor, and the
client's `X-Request-Id` (or a new id) is the correlation id recorded on every event."""

from __future__ import annotations

from typing import Any

from litestar import Request

from application.command_bus import CommandBus, Outcome


async def execute(bus: CommandBus, request: Request[Any, Any, Any], command: Any) -> Outcome:
    user = request.scope.get("user")
    actor = str(user.id) if user is not None else "anonymous"
    return await bus.execute(command, actor, request.headers.get("x-request-id"))

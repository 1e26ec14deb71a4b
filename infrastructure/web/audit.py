"""Audit endpoints: a session's timeline as of a moment, and the raw event stream. Both read the
event log itself. Roles `admin` and `auditor` see everything; a session's owner may replay their
own session; everyone else is told the session does not exist."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Any
from uuid import UUID

import anyio
import msgspec
from litestar import Controller, Request, get
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import Parameter

from application.session_timeline import Step
from infrastructure.storage.audit_log import AuditLog
from infrastructure.web.auth import Principal, auditors

STAFF = ("admin", "auditor")
_EVENT_TYPE = re.compile(r"[A-Za-z]{1,60}")
_POSITION = re.compile(r"[0-9]{1,18}")


class AsOf(msgspec.Struct):
    position: int
    time: str | None


class Timeline(msgspec.Struct):
    as_of: AsOf
    session: dict[str, Any]
    steps: list[Step]


class AuditEvent(msgspec.Struct):
    position: int
    type: str
    aggregate_id: str
    version: int
    at: datetime
    actor_id: str
    correlation_id: str
    data: dict[str, Any]


class AuditEvents(msgspec.Struct):
    """`next_after` is the position the scan reached: pass it as `after` to continue."""

    items: list[AuditEvent]
    next_after: int


def _moment(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationException(
            "as_of must be a position or an ISO-8601 time", extra=[{"key": "as_of", "message": "not a position or time"}]
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class AuditController(Controller):
    path = "/api/audit"
    tags = ["audit"]

    @get("/sessions/{session_id:uuid}/timeline")
    async def timeline(
        self, session_id: UUID, request: Request[Principal, Any, Any], as_of: str | None = None,
    ) -> Timeline:
        """The session exactly as it was at `as_of` (a position or an ISO-8601 time; default now).
        Who asks is checked first: a stranger's request replays nothing (and takes no longer
        for a session that exists than for one that does not)."""
        audit: AuditLog = request.app.state.audit
        if request.user.role not in STAFF and await anyio.to_thread.run_sync(audit.owner_of, session_id) != request.user.id:
            raise NotFoundException("no such session at that moment")
        moment = None
        if as_of is None:
            position = await anyio.to_thread.run_sync(audit.head)
        elif _POSITION.fullmatch(as_of):
            position = int(as_of)
        else:
            moment = _moment(as_of)
            position = await anyio.to_thread.run_sync(audit.position_at, moment)
        timeline = await anyio.to_thread.run_sync(audit.timeline, session_id, position)
        visible = request.user.role in STAFF or timeline.owner_id == str(request.user.id)
        if timeline.title is None or not visible:
            raise NotFoundException("no such session at that moment")
        return Timeline(
            as_of=AsOf(position, moment.isoformat() if moment else None),
            session=timeline.view(),
            steps=timeline.steps,
        )

    @get("/events", guards=[auditors])
    async def events(
        self, request: Request[Principal, Any, Any], after: Annotated[int, Parameter(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100, session: UUID | None = None,
        actor: Annotated[str, Parameter(max_length=100)] | None = None,
        type: str | None = None,  # noqa: A002 - the query's name
        since: str | None = None, until: str | None = None,
    ) -> AuditEvents:
        """The raw event stream in position order, filtered; for roles admin and auditor."""
        if type is not None and not _EVENT_TYPE.fullmatch(type):
            raise ValidationException("type must be an event type name such as MessagePosted",
                                      extra=[{"key": "type", "message": "not an event type name"}])
        audit: AuditLog = request.app.state.audit
        found, reached = await anyio.to_thread.run_sync(
            lambda: audit.events(
                after, limit, session=session, actor=actor, type_=type,
                since=_moment(since) if since else None, until=_moment(until) if until else None,
            )
        )
        return AuditEvents(items=[AuditEvent(**item) for item in found], next_after=reached)

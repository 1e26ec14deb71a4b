"""Audit endpoints: a session's timeline as of a moment, the raw event stream and its export, the
hash chain's head and its verification. All read the event log itself. Roles `admin` and
`auditor` see everything; a session's owner may replay their own session; everyone else is told
the session does not exist."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any
from uuid import UUID

import anyio
import msgspec
from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import Parameter
from litestar.response import Stream

from application.session_timeline import Step
from infrastructure.metrics import CHAIN_BROKEN, CHAIN_VERIFIED_AT
from infrastructure.storage.audit_log import AuditLog
from infrastructure.storage.event_chain import chain_head, verify
from infrastructure.storage.event_store import chain_of
from infrastructure.web.auth import Principal, auditors
from infrastructure.web.edge_types import MAX_POSITION

STAFF = ("admin", "auditor")
_EVENT_TYPE = re.compile(r"^[A-Za-z]{1,60}$")
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
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class AuditController(Controller):
    path = "/api/audit"
    tags = ["audit"]

    @get("/sessions/{session_id:uuid}/timeline")
    async def timeline(
        self,
        session_id: UUID,
        request: Request[Principal, Any, Any],
        as_of: str | None = None,
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
        self,
        request: Request[Principal, Any, Any],
        after: Annotated[int, Parameter(ge=0, le=MAX_POSITION)] = 0,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        session: UUID | None = None,
        actor: Annotated[str | None, Parameter(max_length=100)] = None,
        type: Annotated[str | None, Parameter(pattern=_EVENT_TYPE.pattern, description="An event type name such as MessagePosted.")] = None,
        since: str | None = None,
        until: str | None = None,
        subject: UUID | None = None,
    ) -> AuditEvents:
        """The raw event stream in position order, filtered; for roles admin and auditor."""
        audit: AuditLog = request.app.state.audit
        found, reached = await anyio.to_thread.run_sync(
            lambda: audit.events(
                after,
                limit,
                session=session,
                actor=actor,
                type_=type,
                since=_moment(since) if since else None,
                until=_moment(until) if until else None,
                subject=subject,
            )
        )
        return AuditEvents(items=[AuditEvent(**item) for item in found], next_after=reached)

    @get("/export", guards=[auditors], media_type="application/x-ndjson")
    async def export(
        self,
        request: Request[Principal, Any, Any],
        session: UUID | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> Stream:
        """Every event (of a session, in a time range) as JSON Lines, streamed as it is read."""
        audit: AuditLog = request.app.state.audit
        start, end = (_moment(since) if since else None), (_moment(until) if until else None)
        head = await anyio.to_thread.run_sync(audit.head)

        async def lines() -> AsyncIterator[bytes]:
            after = 0
            while after < head:
                found, after = await anyio.to_thread.run_sync(partial(audit.events, after, 1000, session=session, since=start, until=end))
                if found:
                    yield b"".join(_encode(item) + b"\n" for item in found)

        name = f"chronicle-audit-{session or 'all'}.jsonl"
        return Stream(lines(), media_type="application/x-ndjson", headers={"content-disposition": f'attachment; filename="{name}"'})

    @get("/chain", guards=[auditors])
    async def chain(self, request: Request[Principal, Any, Any]) -> ChainHead:
        """The hash chain's head: the last position and its link."""
        position, digest = await anyio.to_thread.run_sync(chain_head, chain_of(request.app.state.write.reader))
        return ChainHead(position, digest)

    @post("/verifications", guards=[auditors], status_code=202)
    async def start_verification(self, request: Request[Principal, Any, Any]) -> ChainVerification:
        """Walks the whole log in the background, recomputing every link (`chronicle audit verify`)."""
        verifications: ChainVerifications = request.app.state.verifications
        return verifications.start(chain_of(request.app.state.write.reader))

    @get("/verifications/latest", guards=[auditors])
    async def latest_verification(self, request: Request[Principal, Any, Any]) -> ChainVerification:
        latest = request.app.state.verifications.latest
        if latest is None:
            raise NotFoundException("no verification has run since the server started")
        return latest


class ChainHead(msgspec.Struct):
    head_position: int
    head_hash: str


class ChainVerification(msgspec.Struct):
    id: str
    state: str
    """`running`, `intact` or `broken`."""
    checked: int
    first_broken_position: int | None
    detail: str | None
    started_at: datetime
    finished_at: datetime | None


class ChainVerifications:
    """At most one verification at a time, run in a worker thread; the latest is kept."""

    def __init__(self) -> None:
        self.latest: ChainVerification | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self, path: Any) -> ChainVerification:
        if self.latest is not None and self.latest.state == "running":
            return self.latest
        self.latest = current = ChainVerification(uuid.uuid4().hex, "running", 0, None, None, datetime.now(UTC), None)

        def progress(done: int) -> None:
            current.checked = done

        async def run() -> None:
            try:
                result = await anyio.to_thread.run_sync(lambda: verify(path, progress=progress))
                current.checked = result.events
                current.state = "intact" if result.ok else "broken"
                current.first_broken_position, current.detail = result.broken_at, result.problem or None
            except Exception as error:  # noqa: BLE001 - reported as the verification's outcome
                current.state, current.detail = "broken", f"verification failed: {error}"
            current.finished_at = datetime.now(UTC)
            CHAIN_BROKEN.set(current.state == "broken")
            CHAIN_VERIFIED_AT.set(current.finished_at.timestamp())

        self._task = asyncio.get_running_loop().create_task(run(), name="chain-verification")
        return current


_encode = msgspec.json.Encoder().encode

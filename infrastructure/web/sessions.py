"""Chat sessions and their members."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import anyio
import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import Parameter

from application.chat import (
    AddMember,
    ArchiveSession,
    MarkRead,
    RemoveMember,
    SetRetention,
    StartSession,
    UpdateSession,
)
from application.command_bus import CommandBus
from domain.chat_session import TITLE_MAX, ChatSession
from infrastructure.web.auth import Principal
from infrastructure.web.commands import execute
from infrastructure.web.edge_types import AfterPosition, Cursor, name
from infrastructure.web.entity_tags import REVALIDATED, not_modified, tagged, view_tag
from infrastructure.web.pagination import MAX_LIMIT, Page, cursor_position, page
from infrastructure.web.rate_limits import writes
from infrastructure.web.read_your_writes import ProjectionProgress
from projections.change_positions import NAMES, member_view_state, session_view_state
from projections.members import members_of
from projections.sessions import session_for_member, sessions_of_member
from projections.storage import ReadConnection

Title = Annotated[str, name(TITLE_MAX)]
READ_MODELS = ("sessions", "session_members")


RetentionDays = Annotated[int, msgspec.Meta(ge=1, le=36_500)]


class CreateSession(msgspec.Struct, forbid_unknown_fields=True):
    title: Title
    assistant: bool = True
    retention_days: RetentionDays | None = None


class ChangeSession(msgspec.Struct, forbid_unknown_fields=True):
    title: Title | None = None
    assistant: bool | None = None


class NewMember(msgspec.Struct, forbid_unknown_fields=True):
    user_id: UUID


class SessionView(msgspec.Struct):
    """`position` is the global position of the latest change this view reflects."""

    id: str
    title: str
    owner_id: str
    assistant: bool
    archived: bool
    created_at: str
    position: int


class Member(msgspec.Struct):
    user_id: str
    role: str
    added_at: str
    display_name: str | None = None


class SessionDetail(msgspec.Struct, omit_defaults=True):
    """`members` is given for one session, left out in lists."""

    id: str
    title: str
    owner_id: str
    assistant: bool
    archived: bool
    created_at: str
    updated_at: str
    message_count: int
    last_message_preview: str | None
    last_message_at: str | None
    position: int
    members: list[Member] | None = None
    unread: int | None = None
    """In lists: messages by others after my read marker."""


class Retention(msgspec.Struct, forbid_unknown_fields=True):
    """Days a message keeps its content; null: the server's default."""

    retention_days: RetentionDays | None


class RetentionChange(msgspec.Struct):
    session_id: str
    retention_days: int | None
    position: int


class MemberChange(msgspec.Struct):
    session_id: str
    user_id: str
    position: int


def _from_aggregate(session: ChatSession, position: int) -> SessionView:
    return SessionView(
        id=str(session.id),
        title=session.title,
        owner_id=str(session.owner_id),
        assistant=session.assistant,
        archived=session.archived,
        created_at=session.created_on.isoformat(),
        position=position,
    )


def _from_row(row: dict[str, Any]) -> SessionDetail:
    return SessionDetail(
        id=row["id"],
        title=row["title"],
        owner_id=row["owner_id"],
        assistant=bool(row["assistant"]),
        archived=bool(row["archived"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        message_count=row["message_count"],
        last_message_preview=row["last_message_preview"],
        last_message_at=row["last_message_at"],
        position=row["position"],
        unread=row.get("unread"),
    )


class ReadMarker(msgspec.Struct, forbid_unknown_fields=True):
    position: Annotated[int, msgspec.Meta(ge=0)]


class ReadMarkerView(msgspec.Struct):
    session_id: str
    read_position: int
    recorded: bool
    """False when the marker did not move forward (nothing was appended)."""
    position: int | None


class SessionsController(Controller):
    path = "/api/sessions"
    tags = ["sessions"]

    @post("/", status_code=201, guards=[writes])
    async def start(self, data: CreateSession, bus: CommandBus, request: Request[Principal, Any, Any]) -> SessionView:
        outcome = await execute(bus, request, StartSession(request.user.id, data.title, data.assistant, data.retention_days))
        return _from_aggregate(outcome.value, outcome.position)

    @get("/", opt=REVALIDATED)
    async def mine(
        self,
        request: Request[Principal, Any, Any],
        db: ReadConnection,
        progress: ProjectionProgress,
        cursor: Cursor = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_LIMIT)] = 50,
        after_position: AfterPosition = None,
    ) -> Response[Page[SessionDetail]]:
        """The sessions I am a member of, oldest first, with my unread counts. Its ETag changes
        with any change to one of them, to my memberships or to my read markers."""
        position = cursor_position(cursor)
        await progress.wait(READ_MODELS + ("messages",), after_position)
        state = await member_view_state(db, str(request.user.id), READ_MODELS + ("messages",))
        tag = view_tag(state, request, Page[SessionDetail], cursor or "", limit)
        if unchanged := not_modified(request, tag):
            return unchanged
        rows = await sessions_of_member(db, str(request.user.id), position, limit + 1)
        return tagged(page(rows, limit, _from_row, key="created_position"), tag)

    @get("/{session_id:uuid}", opt=REVALIDATED)
    async def one(
        self,
        session_id: UUID,
        request: Request[Principal, Any, Any],
        db: ReadConnection,
        progress: ProjectionProgress,
        after_position: AfterPosition = None,
    ) -> Response[SessionDetail]:
        """The session with its members. Its ETag changes with the session, its messages' count
        and preview, its members, or anyone's display name."""
        await progress.wait(READ_MODELS, after_position)
        state = await session_view_state(db, str(session_id), str(request.user.id), ("session:{session}", NAMES), READ_MODELS + ("users",))
        if state is None:
            raise NotFoundException("no such session")
        tag = view_tag(state, request, SessionDetail)
        if unchanged := not_modified(request, tag):
            return unchanged
        row = await session_for_member(db, str(session_id), str(request.user.id))
        if row is None:
            raise NotFoundException("no such session")
        detail = _from_row(row)
        detail.members = [Member(**m) for m in await members_of(db, str(session_id))]
        return tagged(detail, tag)

    @patch("/{session_id:uuid}", guards=[writes])
    async def change(self, session_id: UUID, data: ChangeSession, bus: CommandBus, request: Request[Principal, Any, Any]) -> SessionView:
        outcome = await execute(bus, request, UpdateSession(session_id, request.user.id, data.title, data.assistant))
        return _from_aggregate(outcome.value, outcome.position)

    @delete("/{session_id:uuid}", status_code=200, guards=[writes])
    async def archive(self, session_id: UUID, bus: CommandBus, request: Request[Principal, Any, Any]) -> SessionView:
        """Archives the session (owner only): it stays readable by its members, marked `archived`,
        and takes no new messages or documents; the log keeps its history."""
        outcome = await execute(bus, request, ArchiveSession(session_id, request.user.id))
        return _from_aggregate(outcome.value, outcome.position)

    @put("/{session_id:uuid}/read", guards=[writes])
    async def mark_read(
        self,
        session_id: UUID,
        data: ReadMarker,
        bus: CommandBus,
        request: Request[Principal, Any, Any],
    ) -> ReadMarkerView:
        """How far I have read (the position of the newest message I have seen): recorded only
        when it moves forward, so a client may send it every few seconds; clears my unread
        count and reaches my other devices as a `session.read` frame on `/api/stream`."""
        head = await anyio.to_thread.run_sync(request.app.state.write.runner.head)
        if data.position > head:
            raise HTTPException(status_code=409, detail=f"position {data.position} is beyond the log's head ({head})", extra={"head": head})
        outcome = await execute(bus, request, MarkRead(session_id, request.user.id, data.position))
        return ReadMarkerView(str(session_id), data.position, bool(outcome.value), outcome.position if outcome.value else None)

    @put("/{session_id:uuid}/retention", guards=[writes])
    async def retention(self, session_id: UUID, data: Retention, bus: CommandBus, request: Request[Principal, Any, Any]) -> RetentionChange:
        """The owner sets how long messages keep their content; older content is erased by the
        retention job (who posted what when stays)."""
        outcome = await execute(bus, request, SetRetention(session_id, request.user.id, data.retention_days))
        return RetentionChange(str(session_id), data.retention_days, outcome.position)

    @post("/{session_id:uuid}/members", status_code=201, guards=[writes])
    async def add_member(self, session_id: UUID, data: NewMember, bus: CommandBus, request: Request[Principal, Any, Any]) -> MemberChange:
        outcome = await execute(bus, request, AddMember(session_id, request.user.id, data.user_id))
        return MemberChange(str(session_id), str(data.user_id), outcome.position)

    @delete("/{session_id:uuid}/members/{user_id:uuid}", status_code=200, guards=[writes])
    async def remove_member(self, session_id: UUID, user_id: UUID, bus: CommandBus, request: Request[Principal, Any, Any]) -> MemberChange:
        outcome = await execute(bus, request, RemoveMember(session_id, request.user.id, user_id))
        return MemberChange(str(session_id), str(user_id), outcome.position)

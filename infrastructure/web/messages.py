"""Messages of a session: post, page through, edit, delete, and read an edit history."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

import anyio
import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.connection import ASGIConnection
from litestar.exceptions import (
    ClientException,
    NotFoundException,
    PermissionDeniedException,
    ServiceUnavailableException,
)
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from application.chat import DeleteMessage, EditMessage, PostedMessage, PostMessage
from application.command_bus import CommandBus
from domain.chat_session import CONTENT_MAX
from domain.message import CLIENT_MESSAGE_ID_MAX, Message
from infrastructure.web.auth import Principal
from infrastructure.web.commands import execute
from infrastructure.web.edge_types import AfterPosition, Cursor
from infrastructure.web.entity_tags import REVALIDATED, not_modified, tagged, view_tag
from infrastructure.web.pagination import MAX_LIMIT, Page, cursor_position, page
from infrastructure.web.rate_limits import posts, writes
from infrastructure.web.read_your_writes import ProjectionProgress
from projections.change_positions import session_view_state
from projections.members import is_member
from projections.messages import awaits_reply, decode_sources, message_in_session, message_versions, messages_before, messages_page
from projections.sessions import session_for_member
from projections.storage import ReadConnection

Content = Annotated[str, msgspec.Meta(min_length=1, max_length=CONTENT_MAX)]
READ_MODELS = ("messages", "session_members")


class NewMessage(msgspec.Struct, forbid_unknown_fields=True):
    content: Content
    client_message_id: Annotated[str, msgspec.Meta(min_length=1, max_length=CLIENT_MESSAGE_ID_MAX)] | None = None


class ChangedContent(msgspec.Struct, forbid_unknown_fields=True):
    content: Content


class MessageView(msgspec.Struct):
    """`position` is where the message stands in the session (the position of its post)."""

    id: str
    session_id: str
    author_id: str
    role: str
    content: str | None
    created_at: str
    position: int
    client_message_id: str | None = None
    edited_at: str | None = None
    deleted: bool = False
    version: int = 1
    reply_to: str | None = None
    reply_status: str | None = None
    sources: list[dict[str, Any]] | None = None
    """An assistant reply's citations (`message`, `document`) and, for a model's reply, whose
    words it saw (`context`), as in its `reply.completed` frame."""


class MessageChange(msgspec.Struct):
    """`position` is the global position of the edit or deletion."""

    id: str
    session_id: str
    version: int
    content: str | None
    deleted: bool
    position: int


class MessageVersion(msgspec.Struct):
    version: int
    content: str | None
    at: str
    position: int


def _posted(message: Message, position: int) -> MessageView:
    return MessageView(
        id=str(message.id),
        session_id=str(message.session_id),
        author_id=str(message.author_id),
        role=message.role,
        content=None if message.deleted else message.content,
        created_at=message.created_on.isoformat(),
        position=position,
        client_message_id=message.client_message_id,
        deleted=message.deleted,
        version=message.version,
    )


def _from_row(row: dict[str, Any]) -> MessageView:
    return MessageView(
        id=row["id"],
        session_id=row["session_id"],
        author_id=row["author_id"],
        role=row["role"],
        content=row["content"],
        created_at=row["created_at"],
        position=row["position"],
        client_message_id=row["client_message_id"],
        edited_at=row["edited_at"],
        deleted=bool(row["deleted"]),
        version=row["version"],
        reply_to=row["reply_to"],
        reply_status=row["reply_status"],
        sources=decode_sources(row["sources"]) if row.get("sources") else None,
    )


def _changed(message: Message, position: int) -> MessageChange:
    return MessageChange(
        id=str(message.id),
        session_id=str(message.session_id),
        version=message.version,
        content=None if message.deleted else message.content,
        deleted=message.deleted,
        position=position,
    )


class _guarded_post(post):
    """Litestar hands every guard a copy of the route handler (about 60 attributes copied, 6 % of
    posting's CPU time); the guards here read only the connection, so they get the handler itself."""

    async def authorize_connection(self, connection: ASGIConnection[Any, Any, Any, Any]) -> None:
        for guard in self.resolve_guards():
            await guard(connection, self)  # type: ignore[misc]


class MessagesController(Controller):
    path = "/api/sessions/{session_id:uuid}/messages"
    tags = ["messages"]

    @_guarded_post(
        "/",
        guards=[posts],
        responses={200: ResponseSpec(MessageView, description="This `client_message_id` was already used: the message it recorded")},
    )
    async def post_message(
        self,
        session_id: UUID,
        data: NewMessage,
        request: Request[Principal, Any, Any],
    ) -> Response[MessageView]:
        """201 with the new message; 200 with the first message when `client_message_id` repeats;
        429 when the user's messages-per-day quota is used up.

        The command bus is taken from the app's state, not injected: resolving a dependency
        builds a `State` and a signature model per request, 6 % of this hot path's CPU time."""
        bus: CommandBus = request.app.state.write.bus
        outcome = await execute(bus, request, PostMessage(session_id, request.user.id, data.content, data.client_message_id))
        posted: PostedMessage = outcome.value
        if posted.first_position is not None:
            return Response(_posted(posted.message, posted.first_position), status_code=200)
        return Response(_posted(posted.message, outcome.position), status_code=201)

    @get("/", opt=REVALIDATED)
    async def page_of_messages(
        self,
        session_id: UUID,
        request: Request[Principal, Any, Any],
        db: ReadConnection,
        progress: ProjectionProgress,
        cursor: Cursor = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_LIMIT)] = 50,
        after_position: AfterPosition = None,
        dir: Literal["f", "b"] = "f",
    ) -> Response[Page[MessageView]]:
        """`dir=f` (default): oldest first, the cursor continues with newer messages.
        `dir=b`: newest first, starting at the newest message; the cursor continues with older ones.
        With an ETag that is still current in `If-None-Match`: 304, nothing read but membership."""
        position = cursor_position(cursor)
        await progress.wait(READ_MODELS, after_position)
        state = await session_view_state(db, str(session_id), str(request.user.id), ("messages:{session}",), READ_MODELS)
        if state is None:
            raise NotFoundException("no such session")
        tag = view_tag(state, request, Page[MessageView], cursor or "", limit, dir)
        if unchanged := not_modified(request, tag):
            return unchanged
        if dir == "b":
            rows = await messages_before(db, str(session_id), position if cursor else None, limit + 1)
        else:
            rows = await messages_page(db, str(session_id), position, limit + 1)
        return tagged(page(rows, limit, _from_row), tag)

    @get("/{message_id:uuid}")
    async def one(
        self,
        session_id: UUID,
        message_id: UUID,
        request: Request[Principal, Any, Any],
        db: ReadConnection,
        progress: ProjectionProgress,
        after_position: AfterPosition = None,
    ) -> MessageView:
        await progress.wait(READ_MODELS, after_position)
        message = None
        if await is_member(db, str(session_id), str(request.user.id)):
            message = await message_in_session(db, str(session_id), str(message_id))
        if message is None:
            raise NotFoundException("no such message")
        return _from_row(message)

    @patch("/{message_id:uuid}", guards=[writes])
    async def edit(
        self,
        session_id: UUID,
        message_id: UUID,
        data: ChangedContent,
        bus: CommandBus,
        request: Request[Principal, Any, Any],
    ) -> MessageChange:
        outcome = await execute(bus, request, EditMessage(session_id, message_id, request.user.id, data.content))
        return _changed(outcome.value, outcome.position)

    @delete("/{message_id:uuid}", status_code=200, guards=[writes])
    async def remove(self, session_id: UUID, message_id: UUID, bus: CommandBus, request: Request[Principal, Any, Any]) -> MessageChange:
        outcome = await execute(bus, request, DeleteMessage(session_id, message_id, request.user.id))
        return _changed(outcome.value, outcome.position)

    @get("/{message_id:uuid}/history")
    async def history(
        self,
        session_id: UUID,
        message_id: UUID,
        request: Request[Principal, Any, Any],
        db: ReadConnection,
        progress: ProjectionProgress,
        cursor: Cursor = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_LIMIT)] = 50,
        after_position: AfterPosition = None,
    ) -> Page[MessageVersion]:
        """Oldest first; the cursor continues with later versions."""
        after_version = cursor_position(cursor)
        await progress.wait(READ_MODELS + ("sessions",), after_position)
        user = str(request.user.id)
        session = await session_for_member(db, str(session_id), user)
        message = await message_in_session(db, str(session_id), str(message_id)) if session else None
        if session is None or message is None:
            raise NotFoundException("no such message")
        if user not in (message["author_id"], session["owner_id"]):
            raise PermissionDeniedException("only the author and the session owner may read a message's history")
        versions = await message_versions(db, str(message_id), after_version, limit + 1)
        return page(versions, limit, lambda v: MessageVersion(**v), key="version")


class ReplyCancellation(msgspec.Struct):
    reply_id: str
    status: str


class RepliesController(Controller):
    path = "/api/sessions/{session_id:uuid}/replies"
    tags = ["messages"]

    @post("/{reply_id:uuid}/cancel", status_code=202)
    async def cancel(
        self,
        session_id: UUID,
        reply_id: UUID,
        request: Request[Principal, Any, Any],
        db: ReadConnection,
        progress: ProjectionProgress,
        after_position: AfterPosition = None,
    ) -> ReplyCancellation:
        """Stops a reply in progress; the text produced so far is stored as a cancelled reply
        (a `reply.completed` frame with `"status": "cancelled"`). Membership is read from the
        read model: pass `after_position` for a session you have just joined or started.

        Replies run on the node that leads, which answers `"cancelling"` or 409. Another node
        checks in its read model that the session has the assistant on and the reply answers
        one of its latest messages, and in the log that the reply has no outcome yet (completed,
        cancelled or failed: 409), passes the request on to the leader (ADR-042's relay) and
        answers `"forwarded"`: the leader cancels the reply if its text is still streaming;
        otherwise the reply keeps its outcome. The stream's `reply.completed` frame tells which."""
        await progress.wait(("session_members", "sessions", "messages"), after_position)
        session = await session_for_member(db, str(session_id), str(request.user.id))
        if session is None:
            raise NotFoundException("no such session")
        if request.app.state.engine.cancel(session_id, reply_id):
            return ReplyCancellation(str(reply_id), "cancelling")
        engine = request.app.state.engine
        if (
            request.app.state.leadership.leading
            or not session["assistant"]
            or not await awaits_reply(db, str(session_id), reply_id)
            or await anyio.to_thread.run_sync(engine.has_outcome, reply_id)
        ):
            raise ClientException("the reply is not in progress", status_code=409)
        if not request.app.state.relay.request_cancel(session_id, reply_id):
            raise ServiceUnavailableException(
                "the request could not be passed to the node that runs the reply; retry shortly", headers={"Retry-After": "1"}
            )
        return ReplyCancellation(str(reply_id), "forwarded")

"""The session feed: every frame of a session in position order, for replay on (re)connect,
published live to the session's channel after commit."""

from __future__ import annotations

from typing import Any

from domain.assistant_reply import AssistantReply, AssistantReplyFailure
from domain.document import Document
from domain.message import Message
from projections.frames import Frame, decode_frame, encode_frame, session_channel
from projections.messages import ASSISTANT_AUTHOR
from projections.projector import Projector, collect_handlers, handles, iso
from projections.session_changes import SESSION_EVENTS, session_change_frame
from projections.storage import ReadConnection, ReadTransaction, Row


@collect_handlers
class SessionFeedProjector(Projector):
    name = "session_feed"
    rebuild_cost = 2
    tables = ("session_frames",)
    schema = (
        """CREATE TABLE IF NOT EXISTS session_frames (
            position INTEGER PRIMARY KEY, session_id TEXT NOT NULL, message_id TEXT,
            body BLOB NOT NULL)
            -- a message's earlier frames carry its current text (NULL once deleted)""",
        "CREATE INDEX IF NOT EXISTS session_frames_by_session ON session_frames(session_id, position)",
        "CREATE INDEX IF NOT EXISTS session_frames_by_message ON session_frames(message_id) WHERE message_id IS NOT NULL",
    )

    def _store(self, tx: ReadTransaction, frame: Frame, message_id: str | None = None) -> None:
        assert frame.session_id is not None, "a session frame names its session (session_frames.session_id is NOT NULL)"
        body = encode_frame(frame)
        tx.insert("INSERT INTO session_frames VALUES (?,?,?,?)", (frame.position, frame.session_id, message_id, body))
        tx.publish(session_channel(frame.session_id), body)

    @handles(*SESSION_EVENTS)
    def _session_changed(self, tx: ReadTransaction, e: Any, position: int) -> None:
        self._store(tx, session_change_frame(e, position))

    @handles(Message.MessagePosted)
    def _posted(self, tx: ReadTransaction, e: Any, position: int) -> None:
        message_id, session_id = str(e.originator_id), str(e.session_id)
        self._store(
            tx,
            Frame(
                position,
                "message.posted",
                session_id,
                {
                    "id": message_id,
                    "session_id": session_id,
                    "author_id": str(e.author_id),
                    "role": e.role,
                    "content": e.content,
                    "created_at": iso(e.timestamp),
                    "position": position,
                    "client_message_id": e.client_message_id,
                    "version": 1,
                },
            ),
            message_id,
        )

    @handles(AssistantReply.AssistantReplyCompleted)
    def _replied(self, tx: ReadTransaction, e: Any, position: int) -> None:
        reply_id, session_id = str(e.originator_id), str(e.session_id)
        self._store(
            tx,
            Frame(
                position,
                "reply.completed",
                session_id,
                {
                    "id": reply_id,
                    "reply_id": reply_id,
                    "session_id": session_id,
                    "reply_to": str(e.message_id),
                    "author_id": ASSISTANT_AUTHOR,
                    "role": "assistant",
                    "content": e.content,
                    "status": e.status,
                    "provider": e.provider,
                    "model": e.model,
                    "prompt_tokens": e.prompt_tokens,
                    "completion_tokens": e.completion_tokens,
                    "latency_ms": e.latency_ms,
                    "sources": e.sources,
                    "created_at": iso(e.timestamp),
                    "position": position,
                },
            ),
            reply_id,
        )

    @handles(AssistantReplyFailure.AssistantReplyFailed)
    def _reply_failed(self, tx: ReadTransaction, e: Any, position: int) -> None:
        self._store(
            tx,
            Frame(
                position,
                "reply.failed",
                str(e.session_id),
                {
                    "reply_id": str(e.originator_id),
                    "reply_to": str(e.message_id),
                    "reason": e.reason,
                    "detail": e.detail,
                },
            ),
        )

    def _replace_content(self, tx: ReadTransaction, message_id: str, content: str | None, *, drop_edits: bool = False) -> None:
        """The message's earlier frames carry `content` instead of what they said (`drop_edits`:
        its earlier edits' frames go instead)."""
        for row in tx.fetch_all("SELECT position, body FROM session_frames WHERE message_id=?", (message_id,)):
            frame = decode_frame(row["body"])
            if drop_edits and frame.type == "message.edited":
                tx.execute("DELETE FROM session_frames WHERE position=?", (row["position"],))
            elif "content" in frame.data and frame.data["content"] != content:
                frame.data["content"] = content
                tx.execute("UPDATE session_frames SET body=? WHERE position=?", (encode_frame(frame), row["position"]))

    @handles(Message.MessageEdited)
    def _edited(self, tx: ReadTransaction, e: Any, position: int) -> None:
        """A stream that replays the session shows only the message's current text: its earlier
        versions are for the author and the session's owner (`…/history`), not every member. The
        earlier edits' frames go (the new one says all they said, and a replay skips the gap), so
        a message keeps at most two frames and an edit rewrites one, however often it is edited."""
        message_id = str(e.originator_id)
        self._replace_content(tx, message_id, e.content, drop_edits=True)
        self._store(
            tx,
            Frame(
                position,
                "message.edited",
                str(e.session_id),
                {
                    "id": message_id,
                    "content": e.content,
                    "version": e.originator_version,
                    "edited_at": iso(e.timestamp),
                },
            ),
            message_id,
        )

    @handles(Message.MessageDeleted)
    def _deleted(self, tx: ReadTransaction, e: Any, position: int) -> None:
        """The deletion is a frame of its own; the content leaves the earlier frames."""
        message_id = str(e.originator_id)
        self._replace_content(tx, message_id, None)
        self._store(tx, Frame(position, "message.deleted", str(e.session_id), {"id": message_id}), message_id)

    @handles(Document.DocumentAttached, Document.DocumentDetached)
    def _document_changed(self, tx: ReadTransaction, e: Any, position: int) -> None:
        kind = "document.attached" if type(e) is Document.DocumentAttached else "document.detached"
        self._store(tx, Frame(position, kind, str(e.session_id), {"document_id": str(e.originator_id), "by": e.actor_id}))


async def session_frames_after(db: ReadConnection, session_id: str, after: int, limit: int) -> list[Row]:
    return await db.fetch_all(
        "SELECT position, body FROM session_frames WHERE session_id=? AND position>? ORDER BY position LIMIT ?",
        (session_id, after, limit),
    )

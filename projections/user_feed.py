"""The user feed: what each user's own stream shows — the sessions they are in, their changes,
invitations, their documents and the progress of their conversions — kept per user for replay
and published to the user's channel."""

from __future__ import annotations

from typing import Any

from domain.chat_session import ChatSession
from domain.conversion import Conversion
from domain.document import Document
from projections.frames import Frame, encode_frame, user_channel
from projections.projector import Projector, collect_handlers, handles, iso
from projections.session_changes import SESSION_EVENTS, session_change_frame
from projections.storage import ReadConnection, ReadTransaction, Row


@collect_handlers
class UserFeedProjector(Projector):
    name = "user_feed"
    tables = ("user_frames", "user_feed_members", "user_feed_conversions")
    schema = (
        """CREATE TABLE IF NOT EXISTS user_frames (
            user_id TEXT NOT NULL, position INTEGER NOT NULL, body BLOB NOT NULL,
            PRIMARY KEY (user_id, position))""",
        """CREATE TABLE IF NOT EXISTS user_feed_members (
            session_id TEXT NOT NULL, user_id TEXT NOT NULL, PRIMARY KEY (session_id, user_id))""",
        """CREATE TABLE IF NOT EXISTS user_feed_conversions (
            conversion_id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, document_id TEXT NOT NULL, target TEXT NOT NULL)""",
    )

    def _send(self, tx: ReadTransaction, user_id: str, frame: Frame) -> None:
        body = encode_frame(frame)
        tx.execute("INSERT INTO user_frames VALUES (?,?,?)", (user_id, frame.position, body))
        tx.publish(user_channel(user_id), body)

    @handles(Document.DocumentUploaded)
    def _uploaded(self, tx: ReadTransaction, e: Any, position: int) -> None:
        self._send(
            tx,
            str(e.owner_id),
            Frame(
                position,
                "document.uploaded",
                None,
                {
                    "id": str(e.originator_id),
                    "filename": e.filename,
                    "media_type": e.media_type,
                    "size": e.size,
                    "sha256": e.sha256,
                    "created_at": iso(e.timestamp),
                },
            ),
        )

    @handles(Document.DocumentDeleted)
    def _deleted(self, tx: ReadTransaction, e: Any, position: int) -> None:
        """Only the owner deletes a document, so the actor is the one to tell."""
        tx.execute("DELETE FROM user_feed_conversions WHERE document_id=?", (str(e.originator_id),))
        self._send(tx, e.actor_id, Frame(position, "document.deleted", None, {"id": str(e.originator_id)}))

    @handles(
        Conversion.ConversionRequested,
        Conversion.ConversionRetried,
        Conversion.ConversionStarted,
        Conversion.ConversionCompleted,
        Conversion.ConversionFailed,
    )
    def _conversion_changed(self, tx: ReadTransaction, e: Any, position: int) -> None:
        conversion_id = str(e.originator_id)
        if type(e) is Conversion.ConversionRequested:
            tx.execute(
                "INSERT INTO user_feed_conversions VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
                (conversion_id, str(e.owner_id), str(e.document_id), e.target),
            )
        row = tx.fetch_one("SELECT * FROM user_feed_conversions WHERE conversion_id=?", (conversion_id,))
        if row is None:
            return  # its document was deleted meanwhile
        data: dict[str, Any] = {"id": conversion_id, "document_id": row["document_id"], "target": row["target"]}
        status = _CONVERSION_STATUS[type(e)]
        if status == "failed":
            data.update(reason=e.reason, detail=e.detail)
        elif status == "completed":
            data.update(size=e.output_size, pages=e.pages, characters=e.characters, duration_ms=e.duration_ms)
        self._send(tx, row["owner_id"], Frame(position, f"conversion.{status}", None, data))

    @handles(ChatSession.MessagesRead)
    def _read(self, tx: ReadTransaction, e: Any, position: int) -> None:
        """Only the reader learns how far they have read (their other devices clear the count)."""
        self._send(tx, str(e.user_id), Frame(position, "session.read", str(e.originator_id), {"position": e.position}))

    @handles(*SESSION_EVENTS)
    def _session_changed(self, tx: ReadTransaction, e: Any, position: int) -> None:
        session_id = str(e.originator_id)
        kind = type(e)
        if kind is ChatSession.SessionStarted:
            tx.execute("INSERT INTO user_feed_members VALUES (?,?)", (session_id, str(e.owner_id)))
        elif kind is ChatSession.MemberAdded:
            tx.execute("INSERT INTO user_feed_members VALUES (?,?) ON CONFLICT DO NOTHING", (session_id, str(e.user_id)))
        recipients = [r["user_id"] for r in tx.fetch_all("SELECT user_id FROM user_feed_members WHERE session_id=?", (session_id,))]
        if kind is ChatSession.MemberRemoved:
            tx.execute("DELETE FROM user_feed_members WHERE session_id=? AND user_id=?", (session_id, str(e.user_id)))
        body = encode_frame(session_change_frame(e, position))
        for user_id in recipients:
            tx.execute("INSERT INTO user_frames VALUES (?,?,?)", (user_id, position, body))
            tx.publish(user_channel(user_id), body)


_CONVERSION_STATUS: dict[type[Conversion.Event], str] = {
    Conversion.ConversionRequested: "pending",
    Conversion.ConversionRetried: "pending",
    Conversion.ConversionStarted: "running",
    Conversion.ConversionCompleted: "completed",
    Conversion.ConversionFailed: "failed",
}


async def user_frames_after(db: ReadConnection, user_id: str, after: int, limit: int) -> list[Row]:
    return await db.fetch_all(
        "SELECT position, body FROM user_frames WHERE user_id=? AND position>? ORDER BY position LIMIT ?",
        (user_id, after, limit),
    )

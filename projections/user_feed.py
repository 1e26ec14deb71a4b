"""The user feed: what each user's own stream shows — the sessions they are in, their changes,
and invitations — kept per user for replay and published to the user's channel."""

from __future__ import annotations

from typing import Any

from domain.chat_session import ChatSession
from projections.frames import encode_frame, user_channel
from projections.projector import Projector, collect_handlers, handles
from projections.session_changes import SESSION_EVENTS, session_change_frame
from projections.storage import ReadConnection, ReadTransaction, Row


@collect_handlers
class UserFeedProjector(Projector):
    name = "user_feed"
    tables = ("user_frames", "user_feed_members")
    schema = (
        """CREATE TABLE IF NOT EXISTS user_frames (
            user_id TEXT NOT NULL, position INTEGER NOT NULL, body BLOB NOT NULL,
            PRIMARY KEY (user_id, position))""",
        """CREATE TABLE IF NOT EXISTS user_feed_members (
            session_id TEXT NOT NULL, user_id TEXT NOT NULL, PRIMARY KEY (session_id, user_id))""",
    )

    @handles(*SESSION_EVENTS)
    def _session_changed(self, tx: ReadTransaction, e: Any, position: int) -> None:
        session_id = str(e.originator_id)
        kind = type(e)
        if kind is ChatSession.SessionStarted:
            tx.execute("INSERT INTO user_feed_members VALUES (?,?)", (session_id, str(e.owner_id)))
        elif kind is ChatSession.MemberAdded:
            tx.execute("INSERT OR IGNORE INTO user_feed_members VALUES (?,?)", (session_id, str(e.user_id)))
        recipients = [r["user_id"] for r in tx.fetch_all("SELECT user_id FROM user_feed_members WHERE session_id=?", (session_id,))]
        if kind is ChatSession.MemberRemoved:
            tx.execute("DELETE FROM user_feed_members WHERE session_id=? AND user_id=?", (session_id, str(e.user_id)))
        body = encode_frame(session_change_frame(e, position))
        for user_id in recipients:
            tx.execute("INSERT INTO user_frames VALUES (?,?,?)", (user_id, position, body))
            tx.publish(user_channel(user_id), body)


async def user_frames_after(db: ReadConnection, user_id: str, after: int, limit: int) -> list[Row]:
    return await db.fetch_all(
        "SELECT position, body FROM user_frames WHERE user_id=? AND position>? ORDER BY position LIMIT ?",
        (user_id, after, limit),
    )

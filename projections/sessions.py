"""The sessions read model: each session with its settings, message count and last-message preview."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from domain.assistant_reply import AssistantReply
from domain.chat_session import ChatSession
from domain.message import Message
from projections.projector import Projector, collect_handlers, handles, iso
from projections.storage import ReadConnection, ReadTransaction, Row
from projections.users import PRINCIPALS_CHANNEL

PREVIEW_LENGTH = 140


@collect_handlers
class SessionsProjector(Projector):
    name = "sessions"
    tables = ("sessions", "session_retention")
    schema = (
        """CREATE TABLE IF NOT EXISTS sessions (
            id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, title TEXT NOT NULL,
            assistant INTEGER NOT NULL, archived INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
            message_count INTEGER NOT NULL DEFAULT 0, last_message_id TEXT,
            last_message_preview TEXT, last_message_at TEXT,
            created_position INTEGER NOT NULL, position INTEGER NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS sessions_by_created_position ON sessions(created_position)",
        """CREATE TABLE IF NOT EXISTS session_retention (
            session_id TEXT PRIMARY KEY, retention_days INTEGER, expired_before TEXT)""",
    )

    @handles(ChatSession.RetentionChanged)
    def _retention_changed(self, tx: ReadTransaction, e: Any, position: int) -> None:
        tx.execute(
            "INSERT INTO session_retention (session_id, retention_days) VALUES (?,?)"
            " ON CONFLICT(session_id) DO UPDATE SET retention_days=excluded.retention_days",
            (str(e.originator_id), e.retention_days),
        )

    @handles(ChatSession.ContentExpired)
    def _content_expired(self, tx: ReadTransaction, e: Any, position: int) -> None:
        tx.execute(
            "INSERT INTO session_retention (session_id, expired_before) VALUES (?,?)"
            " ON CONFLICT(session_id) DO UPDATE SET expired_before=excluded.expired_before",
            (str(e.originator_id), e.before),
        )
        tx.publish(PRINCIPALS_CHANNEL, str(e.originator_id).encode())  # servers drop their cached keys

    @handles(ChatSession.SessionStarted)
    def _started(self, tx: ReadTransaction, e: Any, position: int) -> None:
        at = iso(e.timestamp)
        tx.execute(
            "INSERT INTO sessions (id, owner_id, title, assistant, created_at, updated_at,"
            " created_position, position) VALUES (?,?,?,?,?,?,?,?)",
            (str(e.originator_id), str(e.owner_id), e.title, int(e.assistant), at, at, position, position),
        )
        if e.retention_days is not None:
            tx.execute("INSERT INTO session_retention (session_id, retention_days) VALUES (?,?)", (str(e.originator_id), e.retention_days))

    def _touch(self, tx: ReadTransaction, e: Any, position: int, assignments: str, params: tuple[object, ...]) -> None:
        tx.execute(
            f"UPDATE sessions SET {assignments}updated_at=?, position=? WHERE id=?",
            (*params, iso(e.timestamp), position, str(e.originator_id)),
        )

    @handles(ChatSession.SessionRenamed)
    def _renamed(self, tx: ReadTransaction, e: Any, position: int) -> None:
        self._touch(tx, e, position, "title=?, ", (e.title,))

    @handles(ChatSession.AssistantSettingChanged)
    def _assistant_changed(self, tx: ReadTransaction, e: Any, position: int) -> None:
        self._touch(tx, e, position, "assistant=?, ", (int(e.assistant),))

    @handles(ChatSession.SessionArchived)
    def _archived(self, tx: ReadTransaction, e: Any, position: int) -> None:
        self._touch(tx, e, position, "archived=1, ", ())

    @handles(ChatSession.MemberAdded, ChatSession.MemberRemoved)
    def _membership_changed(self, tx: ReadTransaction, e: Any, position: int) -> None:
        self._touch(tx, e, position, "", ())

    @handles(Message.MessagePosted, AssistantReply.AssistantReplyCompleted)
    def _message_added(self, tx: ReadTransaction, e: Any, position: int) -> None:
        """A user's post or the assistant's completed reply: one more message, the newest."""
        tx.execute(
            "UPDATE sessions SET message_count=message_count+1, last_message_id=?,"
            " last_message_preview=?, last_message_at=?, updated_at=?, position=? WHERE id=?",
            (str(e.originator_id), e.content[:PREVIEW_LENGTH], iso(e.timestamp), iso(e.timestamp), position, str(e.session_id)),
        )

    def apply_batch(self, tx: ReadTransaction, events: Sequence[tuple[int, Any]]) -> None:
        """Set-based for the common case: a run of messages updates each session once (its count
        by how many, its last message from the newest) instead of once per message. Any other
        event this projector handles first writes the run so far, so order is kept."""
        handler_of = self.handlers.get
        added: dict[Any, list[Any]] = {}  # session id → [how many, newest event, its position]
        for position, e in events:
            kind = type(e)
            if kind in _MESSAGE_ADDED:
                run = added.get(e.session_id)
                if run is None:
                    added[e.session_id] = [1, e, position]
                else:
                    run[0] += 1
                    run[1] = e
                    run[2] = position
                continue
            handler = handler_of(kind)
            if handler is not None:
                if added:
                    self._messages_added(tx, added)
                    added = {}
                handler(self, tx, e, position)
        if added:
            self._messages_added(tx, added)

    def _messages_added(self, tx: ReadTransaction, added: dict[Any, list[Any]]) -> None:
        for session_id, (count, e, position) in added.items():
            at = iso(e.timestamp)
            tx.execute(
                "UPDATE sessions SET message_count=message_count+?, last_message_id=?,"
                " last_message_preview=?, last_message_at=?, updated_at=?, position=? WHERE id=?",
                (count, str(e.originator_id), e.content[:PREVIEW_LENGTH], at, at, position, str(session_id)),
            )

    @handles(Message.MessageEdited)
    def _edited(self, tx: ReadTransaction, e: Any, position: int) -> None:
        tx.execute(
            "UPDATE sessions SET last_message_preview=?, position=? WHERE id=? AND last_message_id=?",
            (e.content[:PREVIEW_LENGTH], position, str(e.session_id), str(e.originator_id)),
        )

    @handles(Message.MessageDeleted)
    def _deleted(self, tx: ReadTransaction, e: Any, position: int) -> None:
        tx.execute(
            "UPDATE sessions SET message_count=message_count-1, position=?,"
            " last_message_preview=CASE WHEN last_message_id=? THEN NULL ELSE last_message_preview END"
            " WHERE id=?",
            (position, str(e.originator_id), str(e.session_id)),
        )


_MESSAGE_ADDED = (Message.MessagePosted, AssistantReply.AssistantReplyCompleted)

_COLUMNS = (
    "s.id, s.owner_id, s.title, s.assistant, s.archived, s.created_at, s.updated_at,"
    " s.message_count, s.last_message_preview, s.last_message_at, s.created_position, s.position"
)


async def session_for_member(db: ReadConnection, session_id: str, user_id: str) -> Row | None:
    return await db.fetch_one(
        f"SELECT {_COLUMNS} FROM sessions s JOIN session_members m ON m.session_id=s.id WHERE s.id=? AND m.user_id=?",
        (session_id, user_id),
    )


async def sessions_of_member(db: ReadConnection, user_id: str, after: int, limit: int) -> list[Row]:
    """With `unread`: messages by others after the member's read marker (read from the
    messages read model, by its (session_id, position) index)."""
    return await db.fetch_all(
        f"SELECT {_COLUMNS}, (SELECT COUNT(*) FROM messages x WHERE x.session_id=s.id AND x.position>m.read_position"
        " AND x.author_id!=m.user_id AND x.deleted=0) AS unread"
        " FROM session_members m JOIN sessions s ON s.id=m.session_id"
        " WHERE m.user_id=? AND s.created_position>? ORDER BY s.created_position LIMIT ?",
        (user_id, after, limit),
    )


async def sessions_with_retention(db: ReadConnection) -> list[Row]:
    return await db.fetch_all(
        "SELECT r.session_id, s.title, r.retention_days FROM session_retention r JOIN sessions s ON s.id = r.session_id"
        " WHERE r.retention_days IS NOT NULL ORDER BY s.created_position"
    )


def retention_overrides(tx: Any) -> dict[str, int]:
    """Sessions whose owner set how many days their messages keep their content."""
    rows = tx.fetch_all("SELECT session_id, retention_days FROM session_retention WHERE retention_days IS NOT NULL")
    return {r["session_id"]: int(r["retention_days"]) for r in rows}

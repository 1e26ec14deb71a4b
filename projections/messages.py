"""The session messages read model: messages in log order, and every version of each.

A message's versions are stored apart only once it is edited: until then its one version is its
`messages` row (content, time, position), so a post writes one row, not two copies of its
content. The first edit stores version 1 from that row before the row changes."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec

from domain.assistant_reply import AssistantReply, reply_id_for
from domain.message import Message
from projections.projector import Projector, collect_handlers, handles, iso
from projections.storage import ReadConnection, ReadTransaction, Row

ASSISTANT_AUTHOR = "assistant"


@collect_handlers
class SessionMessagesProjector(Projector):
    name = "messages"
    rebuild_cost = 3
    tables = ("messages", "message_versions")
    schema = (
        """CREATE TABLE IF NOT EXISTS messages (
            position INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, session_id TEXT NOT NULL,
            author_id TEXT NOT NULL, role TEXT NOT NULL, content TEXT,
            client_message_id TEXT, created_at TEXT NOT NULL, edited_at TEXT,
            deleted INTEGER NOT NULL DEFAULT 0, version INTEGER NOT NULL, reply_to TEXT,
            reply_status TEXT, sources TEXT)""",
        "CREATE INDEX IF NOT EXISTS messages_by_session ON messages(session_id, position)",
        "CREATE INDEX IF NOT EXISTS messages_by_author ON messages(author_id, created_at)",
        "CREATE INDEX IF NOT EXISTS messages_by_reply_to ON messages(reply_to) WHERE reply_to IS NOT NULL",
        """CREATE TABLE IF NOT EXISTS message_versions (
            message_id TEXT NOT NULL, version INTEGER NOT NULL, content TEXT,
            at TEXT NOT NULL, position INTEGER NOT NULL, PRIMARY KEY (message_id, version))
            -- edited messages only: an unedited message's one version is its messages row""",
    )

    @handles(Message.MessagePosted)
    def _posted(self, tx: ReadTransaction, e: Any, position: int) -> None:
        at = iso(e.timestamp)
        message_id = str(e.originator_id)
        tx.insert(
            "INSERT INTO messages (position, id, session_id, author_id, role, content,"
            " client_message_id, created_at, version) VALUES (?,?,?,?,?,?,?,?,1)",
            (position, message_id, str(e.session_id), str(e.author_id), e.role, e.content, e.client_message_id, at),
        )

    @handles(AssistantReply.AssistantReplyCompleted)
    def _replied(self, tx: ReadTransaction, e: Any, position: int) -> None:
        """A completed (or cancelled) reply is a message of role `assistant` in the session."""
        at = iso(e.timestamp)
        reply_id = str(e.originator_id)
        tx.insert(
            "INSERT INTO messages (position, id, session_id, author_id, role, content, created_at, version,"
            " reply_to, reply_status, sources) VALUES (?,?,?,?,?,?,?,1,?,?,?)",
            (
                position,
                reply_id,
                str(e.session_id),
                ASSISTANT_AUTHOR,
                "assistant",
                e.content,
                at,
                str(e.message_id),
                e.status,
                _encode_sources(e.sources) if e.sources else None,
            ),
        )

    @handles(Message.MessageEdited)
    def _edited(self, tx: ReadTransaction, e: Any, position: int) -> None:
        at = iso(e.timestamp)
        message_id = str(e.originator_id)
        tx.execute(
            "INSERT OR IGNORE INTO message_versions SELECT id, 1, content, created_at, position FROM messages WHERE id=? AND version=1",
            (message_id,),
        )
        tx.execute(
            "UPDATE messages SET content=?, edited_at=?, version=version+1 WHERE id=?",
            (e.content, at, message_id),
        )
        tx.execute(
            "INSERT INTO message_versions SELECT id, version, ?, ?, ? FROM messages WHERE id=?",
            (e.content, at, position, message_id),
        )

    @handles(Message.MessageDeleted)
    def _deleted(self, tx: ReadTransaction, e: Any, position: int) -> None:
        message_id = str(e.originator_id)
        tx.execute("UPDATE messages SET content=NULL, deleted=1 WHERE id=?", (message_id,))
        tx.execute("UPDATE message_versions SET content=NULL WHERE message_id=?", (message_id,))


_COLUMNS = (
    "id, session_id, author_id, role, content, client_message_id, created_at, edited_at,"
    " deleted, version, position, reply_to, reply_status, sources"
)
_encode_sources = msgspec.json.Encoder().encode
decode_sources = msgspec.json.Decoder(list[dict[str, Any]]).decode
"""A reply's `sources` column as the projector stored it."""


async def messages_page(db: ReadConnection, session_id: str, after: int, limit: int) -> list[Row]:
    return await db.fetch_all(
        f"SELECT {_COLUMNS} FROM messages WHERE session_id=? AND position>? ORDER BY position LIMIT ?",
        (session_id, after, limit),
    )


async def messages_before(db: ReadConnection, session_id: str, before: int | None, limit: int) -> list[Row]:
    """Newest first: the `limit` messages before `before` (None: from the newest), so a
    conversation opens at its end with one indexed query however long it is."""
    return await db.fetch_all(
        f"SELECT {_COLUMNS} FROM messages WHERE session_id=? AND position<? ORDER BY position DESC LIMIT ?",
        (session_id, before if before is not None else 2**62, limit),
    )


async def message_in_session(db: ReadConnection, session_id: str, message_id: str) -> Row | None:
    return await db.fetch_one(f"SELECT {_COLUMNS} FROM messages WHERE session_id=? AND id=?", (session_id, message_id))


async def message_versions(db: ReadConnection, message_id: str, after_version: int = 0, limit: int = -1) -> list[Row]:
    """The versions after `after_version`, oldest first, at most `limit` (-1: all): the stored
    ones of an edited message, or an unedited one's row."""
    return await db.fetch_all(
        "SELECT * FROM (SELECT version, content, at, position FROM message_versions WHERE message_id=?"
        " UNION ALL SELECT 1, content, created_at, position FROM messages WHERE id=? AND version=1"
        " AND NOT EXISTS (SELECT 1 FROM message_versions WHERE message_id=?))"
        " WHERE version>? ORDER BY version LIMIT ?",
        (message_id, message_id, message_id, after_version, limit),
    )


async def recent_messages(db: ReadConnection, session_id: str, before: int, limit: int) -> list[Row]:
    """The session's latest messages before a position, oldest first (deleted ones left out).
    Whose words each is, as its content key names them: an assistant reply's are its asker's
    (the author of the message it answers)."""
    rows = await db.fetch_all(
        "SELECT m.role, m.content, m.sources, substr(COALESCE(m.edited_at, m.created_at), 1, 10) AS content_day,"
        " CASE WHEN m.reply_to IS NULL THEN m.author_id ELSE (SELECT q.author_id FROM messages q WHERE q.id = m.reply_to) END"
        " AS author_id"
        " FROM messages m WHERE m.session_id=? AND m.position<? AND m.deleted=0"
        " ORDER BY m.position DESC LIMIT ?",
        (session_id, before, limit),
    )
    return rows[::-1]


async def messages_posted_since(db: ReadConnection, author_id: str, since: str) -> int:
    row = await db.fetch_one("SELECT COUNT(*) AS n FROM messages WHERE author_id=? AND role='user' AND created_at>=?", (author_id, since))
    return int(row["n"]) if row else 0


async def replies_since(db: ReadConnection, author_id: str, since: str, asked_since: str) -> int:
    """Assistant replies recorded since `since` to the author's messages posted since `asked_since`."""
    row = await db.fetch_one(
        "SELECT COUNT(*) AS n FROM messages m JOIN messages r ON r.reply_to = m.id"
        " WHERE m.author_id=? AND m.created_at>=? AND r.created_at>=?",
        (author_id, asked_since, since),
    )
    return int(row["n"]) if row else 0


async def awaits_reply(db: ReadConnection, session_id: str, reply_id: UUID, recent: int = 100) -> bool:
    """Whether `reply_id` is the assistant's reply to one of the session's latest `recent` user
    messages and no reply message is recorded for it: a reply that may be in progress on the node
    that leads (a failed reply is not a message, so it stays awaited here). The reply's id is
    derived from its message's, so the candidates are compared."""
    rows = await db.fetch_all(
        "SELECT m.id FROM messages m WHERE m.session_id=? AND m.role='user'"
        " AND NOT EXISTS (SELECT 1 FROM messages r WHERE r.reply_to = m.id) ORDER BY m.position DESC LIMIT ?",
        (session_id, recent),
    )
    return any(reply_id_for(UUID(row["id"])) == reply_id for row in rows)

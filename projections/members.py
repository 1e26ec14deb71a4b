"""The session members read model: who may see which session."""

from __future__ import annotations

from typing import Any

from domain.chat_session import ChatSession
from projections.projector import Projector, collect_handlers, handles, iso
from projections.storage import ReadConnection, ReadTransaction, Row


@collect_handlers
class SessionMembersProjector(Projector):
    name = "session_members"
    tables = ("session_members",)
    schema = (
        """CREATE TABLE IF NOT EXISTS session_members (
            session_id TEXT NOT NULL, user_id TEXT NOT NULL, role TEXT NOT NULL,
            added_at TEXT NOT NULL, position INTEGER NOT NULL, read_position INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (session_id, user_id))""",
        "CREATE INDEX IF NOT EXISTS session_members_by_user ON session_members(user_id, session_id)",
    )

    @handles(ChatSession.SessionStarted)
    def _started(self, tx: ReadTransaction, e: Any, position: int) -> None:
        tx.execute(
            "INSERT INTO session_members (session_id, user_id, role, added_at, position) VALUES (?,?,?,?,?)",
            (str(e.originator_id), str(e.owner_id), "owner", iso(e.timestamp), position),
        )

    @handles(ChatSession.MemberAdded)
    def _added(self, tx: ReadTransaction, e: Any, position: int) -> None:
        tx.execute(
            "INSERT INTO session_members (session_id, user_id, role, added_at, position) VALUES (?,?,?,?,?)"
            " ON CONFLICT (session_id, user_id) DO UPDATE SET role=excluded.role, added_at=excluded.added_at,"
            " position=excluded.position, read_position=0",
            (str(e.originator_id), str(e.user_id), "member", iso(e.timestamp), position),
        )

    @handles(ChatSession.MemberRemoved)
    def _removed(self, tx: ReadTransaction, e: Any, position: int) -> None:
        tx.execute(
            "DELETE FROM session_members WHERE session_id=? AND user_id=?",
            (str(e.originator_id), str(e.user_id)),
        )

    @handles(ChatSession.MessagesRead)
    def _read(self, tx: ReadTransaction, e: Any, position: int) -> None:
        tx.execute(
            "UPDATE session_members SET read_position=? WHERE session_id=? AND user_id=?",
            (e.position, str(e.originator_id), str(e.user_id)),
        )


async def sessions_of_user(db: ReadConnection, user_id: str) -> list[str]:
    rows = await db.fetch_all("SELECT session_id FROM session_members WHERE user_id=?", (user_id,))
    return [row["session_id"] for row in rows]


async def is_member(db: ReadConnection, session_id: str, user_id: str) -> bool:
    row = await db.fetch_one("SELECT 1 AS yes FROM session_members WHERE session_id=? AND user_id=?", (session_id, user_id))
    return row is not None


async def members_of(db: ReadConnection, session_id: str) -> list[Row]:
    return await db.fetch_all(
        "SELECT m.user_id, m.role, m.added_at, u.display_name FROM session_members m LEFT JOIN users u ON u.id = m.user_id"
        " WHERE m.session_id=? ORDER BY m.position",
        (session_id,),
    )

"""The users read model: who exists, under which role."""

from __future__ import annotations

from typing import Any

from domain.user import User
from projections.projector import Projector, collect_handlers, handles, iso
from projections.storage import ReadConnection, ReadTransaction, Row


@collect_handlers
class UsersProjector(Projector):
    name = "users"
    tables = ("users",)
    schema = (
        """CREATE TABLE IF NOT EXISTS users (
            id TEXT PRIMARY KEY, email TEXT NOT NULL, display_name TEXT NOT NULL,
            role TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL, position INTEGER NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS users_by_position ON users(position)",
    )

    @handles(User.UserRegistered)
    def _registered(self, tx: ReadTransaction, e: Any, position: int) -> None:
        tx.execute(
            "INSERT INTO users (id, email, display_name, role, created_at, position) VALUES (?,?,?,?,?,?)",
            (str(e.originator_id), e.email, e.display_name, e.role, iso(e.timestamp), position),
        )

    @handles(User.UserRoleChanged)
    def _role_changed(self, tx: ReadTransaction, e: Any, position: int) -> None:
        tx.execute("UPDATE users SET role=? WHERE id=?", (e.role, str(e.originator_id)))

    @handles(User.UserDisabled)
    def _disabled(self, tx: ReadTransaction, e: Any, position: int) -> None:
        tx.execute("UPDATE users SET disabled=1 WHERE id=?", (str(e.originator_id),))

    @handles(User.UserEnabled)
    def _enabled(self, tx: ReadTransaction, e: Any, position: int) -> None:
        tx.execute("UPDATE users SET disabled=0 WHERE id=?", (str(e.originator_id),))


_COLUMNS = "id, email, display_name, role, disabled, created_at, position"


async def user_by_id(db: ReadConnection, user_id: str) -> Row | None:
    return await db.fetch_one(f"SELECT {_COLUMNS} FROM users WHERE id=?", (user_id,))


async def list_users(db: ReadConnection, after: int, limit: int) -> list[Row]:
    return await db.fetch_all(
        f"SELECT {_COLUMNS} FROM users WHERE position>? ORDER BY position LIMIT ?", (after, limit)
    )

"""The users read model: who exists, under which role."""

from __future__ import annotations

from typing import Any

from domain.user import ERASED, User
from projections.projector import Projector, collect_handlers, handles, iso
from projections.storage import ReadConnection, ReadTransaction, Row

PRINCIPALS_CHANNEL = "principals"
"""Where a change of a user's role, disabled state or quotas (or an erasure, or expired content) is
announced once committed, so servers drop what they cached for it — principal, data keys — at once."""


@collect_handlers
class UsersProjector(Projector):
    name = "users"
    tables = ("users", "user_quotas")
    schema = (
        """CREATE TABLE IF NOT EXISTS users (
            id TEXT PRIMARY KEY, email TEXT NOT NULL, display_name TEXT NOT NULL,
            role TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL, position INTEGER NOT NULL,
            token_generation INTEGER NOT NULL DEFAULT 0)""",
        "CREATE INDEX IF NOT EXISTS users_by_email ON users(email)",
        "CREATE INDEX IF NOT EXISTS users_by_position ON users(position)",
        """CREATE TABLE IF NOT EXISTS user_quotas (
            user_id TEXT PRIMARY KEY, messages_per_day INTEGER, replies_per_day INTEGER, storage_bytes INTEGER,
            position INTEGER NOT NULL)""",
    )

    @handles(User.UserQuotasSet)
    def _quotas_set(self, tx: ReadTransaction, e: Any, position: int) -> None:
        tx.execute(
            "INSERT INTO user_quotas VALUES (?,?,?,?,?) ON CONFLICT (user_id) DO UPDATE SET messages_per_day=excluded.messages_per_day,"
            " replies_per_day=excluded.replies_per_day, storage_bytes=excluded.storage_bytes, position=excluded.position",
            (str(e.originator_id), e.messages_per_day, e.replies_per_day, e.storage_bytes, position),
        )
        tx.publish(PRINCIPALS_CHANNEL, str(e.originator_id).encode())

    @handles(User.UserRegistered)
    def _registered(self, tx: ReadTransaction, e: Any, position: int) -> None:
        tx.execute(
            "INSERT INTO users (id, email, display_name, role, created_at, position) VALUES (?,?,?,?,?,?)",
            (str(e.originator_id), e.email, e.display_name, e.role, iso(e.timestamp), position),
        )

    @handles(User.UserRoleChanged)
    def _role_changed(self, tx: ReadTransaction, e: Any, position: int) -> None:
        tx.execute("UPDATE users SET role=?, token_generation=token_generation+1 WHERE id=?", (e.role, str(e.originator_id)))
        tx.publish(PRINCIPALS_CHANNEL, str(e.originator_id).encode())

    @handles(User.UserDisabled)
    def _disabled(self, tx: ReadTransaction, e: Any, position: int) -> None:
        tx.execute("UPDATE users SET disabled=1, token_generation=token_generation+1 WHERE id=?", (str(e.originator_id),))
        tx.publish(PRINCIPALS_CHANNEL, str(e.originator_id).encode())

    @handles(User.UserPasswordChanged, User.UserSignedOut)
    def _tokens_revoked(self, tx: ReadTransaction, e: Any, position: int) -> None:
        tx.execute("UPDATE users SET token_generation=token_generation+1 WHERE id=?", (str(e.originator_id),))
        tx.publish(PRINCIPALS_CHANNEL, str(e.originator_id).encode())

    @handles(User.UserErased)
    def _erased(self, tx: ReadTransaction, e: Any, position: int) -> None:
        tx.execute(
            "UPDATE users SET email=?, display_name=?, disabled=1, token_generation=token_generation+1 WHERE id=?",
            (ERASED, ERASED, str(e.originator_id)),
        )
        tx.publish(PRINCIPALS_CHANNEL, str(e.originator_id).encode())

    @handles(User.UserEnabled)
    def _enabled(self, tx: ReadTransaction, e: Any, position: int) -> None:
        tx.execute("UPDATE users SET disabled=0 WHERE id=?", (str(e.originator_id),))
        tx.publish(PRINCIPALS_CHANNEL, str(e.originator_id).encode())


_COLUMNS = "id, email, display_name, role, disabled, created_at, position"


async def user_by_id(db: ReadConnection, user_id: str) -> Row | None:
    return await db.fetch_one(f"SELECT {_COLUMNS} FROM users WHERE id=?", (user_id,))


async def principal_of(db: ReadConnection, user_id: str) -> Row | None:
    """What a request needs to know of its user: role, disabled state and token generation."""
    return await db.fetch_one(
        "SELECT id, role, disabled, token_generation FROM users WHERE id=?",
        (user_id,),
    )


async def list_users(db: ReadConnection, after: int, limit: int, search: str | None = None) -> list[Row]:
    """In registration order; `search` keeps those whose email or display name contains it
    (case-insensitive; `%` and `_` are taken literally)."""
    if not search:
        return await db.fetch_all(f"SELECT {_COLUMNS} FROM users WHERE position>? ORDER BY position LIMIT ?", (after, limit))
    pattern = "%" + search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return await db.fetch_all(
        f"SELECT {_COLUMNS} FROM users WHERE position>? AND (lower(email) LIKE ? ESCAPE '\\' OR lower(display_name) LIKE ? ESCAPE '\\')"
        " ORDER BY position LIMIT ?",
        (after, pattern, pattern, limit),
    )


async def sessions_count(db: ReadConnection, user_id: str) -> int:
    row = await db.fetch_one("SELECT COUNT(*) AS n FROM session_members WHERE user_id=?", (user_id,))
    return int(row["n"]) if row else 0


async def quotas_of(db: ReadConnection, user_id: str) -> Row:
    """The user's limits (None: no limit)."""
    row = await db.fetch_one("SELECT messages_per_day, replies_per_day, storage_bytes FROM user_quotas WHERE user_id=?", (user_id,))
    return row or {"messages_per_day": None, "replies_per_day": None, "storage_bytes": None}

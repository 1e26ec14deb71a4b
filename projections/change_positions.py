"""Where each cacheable view last changed: per scope, the global position of the latest event that
changed what the view shows. The HTTP layer derives its ETags from these positions (ADR-045), so a
write invalidates exactly the views it changed, and a revalidation is answered from one indexed
lookup instead of the view's tables.

Scopes:
- `messages:<session>`: a session's messages (every event the messages projector applies);
- `session:<session>`: a session's row and members (every event the sessions and members
  projectors apply but read markers, which no session view shows);
- `member:<user>`: which sessions a user is in and how far they have read (their session list);
- `names`: any display name (registrations, erasures): member lists show them.

Positions only grow, so the latest change of several scopes is their maximum. The tags are only
trusted while this projector and the projectors whose tables a view is built from stand at the
same position (see `view_state`): a projector that failed, was reset or is catching up after a
swap makes the views it feeds uncacheable instead of stale."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from domain.assistant_reply import AssistantReply
from domain.chat_session import ChatSession
from domain.message import Message
from domain.user import User
from projections.projector import Projector, collect_handlers, handles
from projections.storage import ReadConnection, ReadTransaction, Row

MESSAGE_EVENTS = (Message.MessagePosted, AssistantReply.AssistantReplyCompleted, Message.MessageEdited, Message.MessageDeleted)
SESSION_EVENTS = (
    ChatSession.SessionStarted,
    ChatSession.SessionRenamed,
    ChatSession.AssistantSettingChanged,
    ChatSession.SessionArchived,
    ChatSession.MemberAdded,
    ChatSession.MemberRemoved,
    ChatSession.RetentionChanged,
    ChatSession.ContentExpired,
)
MEMBER_EVENTS = (ChatSession.SessionStarted, ChatSession.MemberAdded, ChatSession.MemberRemoved, ChatSession.MessagesRead)
NAME_EVENTS = (User.UserRegistered, User.UserErased)
NAMES = "names"

_CHANGED = (
    "INSERT INTO change_positions (scope, position) VALUES (?,?) ON CONFLICT(scope) DO UPDATE SET position=max(position, excluded.position)"
)
_MESSAGE_KINDS = frozenset(MESSAGE_EVENTS)


def _message_scopes(session_id: Any) -> tuple[str, str]:
    """A message is shown in its session's list, and its count and preview in the session's row."""
    return f"messages:{session_id}", f"session:{session_id}"


def _scopes(e: Any) -> tuple[str, ...]:
    """The scopes an event changes."""
    kind = type(e)
    if kind in _MESSAGE_KINDS:
        return _message_scopes(e.session_id)
    if kind in NAME_EVENTS:
        return (NAMES,)
    scopes = () if kind is ChatSession.MessagesRead else (f"session:{e.originator_id}",)
    if kind is ChatSession.SessionStarted:
        return (*scopes, f"member:{e.owner_id}")
    if kind in MEMBER_EVENTS:
        return (*scopes, f"member:{e.user_id}")
    return scopes


@collect_handlers
class ChangePositionsProjector(Projector):
    name = "changes"
    tables = ("change_positions",)
    schema = ("CREATE TABLE IF NOT EXISTS change_positions (scope TEXT PRIMARY KEY, position INTEGER NOT NULL)",)

    @handles(*MESSAGE_EVENTS, *SESSION_EVENTS, ChatSession.MessagesRead, *NAME_EVENTS)
    def _changed(self, tx: ReadTransaction, e: Any, position: int) -> None:
        for scope in _scopes(e):
            tx.insert(_CHANGED, (scope, position))

    def apply_batch(self, tx: ReadTransaction, events: Sequence[tuple[int, Any]]) -> None:
        """Set-based: each scope the batch changed is upserted at the batch's latest position
        for it (a session's scope at most twice: from its messages and from its own events).
        Events come in rising positions, so that is what the one-event path's upserts (`max`)
        leave; and scopes are written in the order they first appear, so a new scope gets the
        rowid it gets one event at a time. A rebuild writes a row per scope and batch instead
        of two per message event."""
        latest: dict[Any, int] = {}  # a scope, or (session id,) for both of a message's scopes
        handled = self.handlers
        for position, e in events:
            kind = type(e)
            if kind in _MESSAGE_KINDS:  # nearly every event of a busy log
                latest[(e.session_id,)] = position
            elif kind in handled:
                for scope in _scopes(e):
                    latest[scope] = position
        for key, position in latest.items():
            for scope in _message_scopes(key[0]) if type(key) is tuple else (key,):
                tx.insert(_CHANGED, (scope, position))


def _in_step(names: tuple[str, ...]) -> str:
    """1 when these projectors and this one stand at one position in the same snapshot."""
    listed = ",".join(f"'{name}'" for name in (ChangePositionsProjector.name, *names))  # fixed projector names, never input
    return (
        f"(SELECT COUNT(*) = {len(names) + 1} AND COUNT(DISTINCT position) = 1"
        f" FROM projection_positions WHERE name IN ({listed})) AS in_step"
    )


_GENERATION = "(SELECT value FROM read_generation WHERE id = 1) AS generation"


async def session_view_state(
    db: ReadConnection, session_id: str, user_id: str, scopes: tuple[str, ...], names: tuple[str, ...]
) -> Row | None:
    """None unless the user is a member of the session (authorization comes first); else the read
    store's generation, the latest change among `scopes` (`{session}` stands for the session's id),
    and whether the projectors `names` are in step with this one — all from one snapshot."""
    wanted = [scope.format(session=session_id) for scope in scopes]
    marks = ",".join("?" * len(wanted))
    return await db.fetch_one(
        f"SELECT {_GENERATION}, (SELECT MAX(position) FROM change_positions WHERE scope IN ({marks})) AS changed, {_in_step(names)}"
        " FROM session_members WHERE session_id=? AND user_id=?",
        (*wanted, session_id, user_id),
    )


async def member_view_state(db: ReadConnection, user_id: str, names: tuple[str, ...]) -> Row:
    """For a user's list of sessions: the latest change of any session they are in, or of their
    memberships and read markers (a session they left no longer counts, their leaving does)."""
    row = await db.fetch_one(
        f"SELECT {_GENERATION}, MAX("
        " COALESCE((SELECT MAX(c.position) FROM session_members m JOIN change_positions c ON c.scope = 'session:' || m.session_id"
        " WHERE m.user_id=?), 0),"
        " COALESCE((SELECT position FROM change_positions WHERE scope=?), 0)) AS changed,"
        f" {_in_step(names)}",
        (user_id, f"member:{user_id}"),
    )
    assert row is not None  # a SELECT without FROM gives one row
    return row


async def read_generation(db: ReadConnection) -> int | None:
    row = await db.fetch_one(f"SELECT {_GENERATION}")
    return None if row is None else row["generation"]

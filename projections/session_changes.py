"""The frames of session-level changes, shared by the session feed and the user feed."""

from __future__ import annotations

from typing import Any

from domain.chat_session import ChatSession
from projections.frames import Frame
from projections.projector import iso

SESSION_EVENTS = (
    ChatSession.SessionStarted,
    ChatSession.SessionRenamed,
    ChatSession.AssistantSettingChanged,
    ChatSession.MemberAdded,
    ChatSession.MemberRemoved,
    ChatSession.SessionArchived,
)


def session_change_frame(e: Any, position: int) -> Frame:
    session_id = str(e.originator_id)
    kind = type(e)
    if kind is ChatSession.SessionStarted:
        return Frame(
            position,
            "session.started",
            session_id,
            {
                "title": e.title,
                "owner_id": str(e.owner_id),
                "assistant": e.assistant,
                "created_at": iso(e.timestamp),
            },
        )
    if kind is ChatSession.SessionRenamed:
        return Frame(position, "session.renamed", session_id, {"title": e.title})
    if kind is ChatSession.AssistantSettingChanged:
        return Frame(position, "session.assistant_changed", session_id, {"assistant": e.assistant})
    if kind is ChatSession.MemberAdded:
        return Frame(position, "member.added", session_id, {"user_id": str(e.user_id)})
    if kind is ChatSession.MemberRemoved:
        return Frame(position, "member.removed", session_id, {"user_id": str(e.user_id)})
    if kind is ChatSession.SessionArchived:
        return Frame(position, "session.archived", session_id, {})
    raise TypeError(f"not a session change: {kind.__name__}")

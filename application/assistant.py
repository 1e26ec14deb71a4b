"""What the chat engine needs from an assistant provider, and recording its outcome."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

from application.quotas import consume_quota
from application.unit_of_work import UnitOfWork
from domain.aggregate import InvalidValue
from domain.assistant_reply import (
    FAILURE_REASONS,
    REPLY_STATUSES,
    AssistantReply,
    AssistantReplyFailure,
    reply_id_for,
)
from domain.usage import QuotaExceeded


@dataclass(frozen=True)
class Turn:
    role: str
    content: str
    author_id: str | None = None
    content_day: str | None = None
    """Whose words these are and the day of their version: a reply that saw them is sealed
    with their key too (see `ReplyUsage.sources`, kind `context`). An assistant reply's are its
    asker's."""
    drew_on: tuple[dict[str, Any], ...] = ()
    """An assistant reply's own sources: whose words it may repeat, so a reply that saw it is
    sealed with their keys too."""


@dataclass(frozen=True)
class ReplyRequest:
    """Asked of a provider: answer `question`, posted by `user_id` at `position` in a session."""

    session_id: UUID
    message_id: UUID
    user_id: UUID
    question: str
    position: int


@dataclass
class ReplyUsage:
    """Filled in by the provider while it streams."""

    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    sources: list[dict[str, str]] = field(default_factory=list)


class AssistantProvider(Protocol):
    name: str

    def reply(self, request: ReplyRequest, usage: ReplyUsage) -> AsyncIterator[str]:
        """Yields the reply's text in pieces as they are produced."""


@dataclass(frozen=True)
class RecordReply:
    message_id: UUID
    session_id: UUID
    content: str
    status: str
    provider: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int
    sources: tuple[dict[str, str], ...] = ()
    asker_id: UUID | None = None


@dataclass(frozen=True)
class RecordReplyFailure:
    message_id: UUID
    session_id: UUID
    reason: str
    detail: str
    partial_content: str = ""
    asker_id: UUID | None = None
    sources: tuple[dict[str, str], ...] = ()
    """What the partial text drew on (as `RecordReply.sources`): it is sealed with their keys too."""


ANSWER_RULES = ("questions", "all")
_ADDRESSED = re.compile(r"^\s*(@assistant\b|assistant\s*[,:])", re.IGNORECASE)
_QUESTION = re.compile(r"\?(?=\s|$|[\"'”’)\]])")


def wants_reply(content: str, rule: str = "questions") -> bool:
    """Which user messages the assistant answers. `questions` (the default): a message with a
    sentence ending in `?`, or one that addresses the assistant first (`@assistant …`,
    `Assistant, …`); a plain statement gets no reply. `all`: every message."""
    if rule == "all":
        return True
    return bool(_ADDRESSED.match(content) or _QUESTION.search(content))


def _existing(uow: UnitOfWork, message_id: UUID) -> AssistantReply | AssistantReplyFailure | None:
    reply_id = reply_id_for(message_id)
    return uow.find(AssistantReply, reply_id) or uow.find(AssistantReplyFailure, reply_id)


def record_reply(uow: UnitOfWork, cmd: RecordReply) -> AssistantReply | AssistantReplyFailure:
    """At most one outcome per message: a second recording answers the first."""
    if cmd.status not in REPLY_STATUSES:
        raise InvalidValue("status", f"status must be one of {', '.join(REPLY_STATUSES)}")
    existing = _existing(uow, cmd.message_id)
    if existing is not None:
        return existing
    if cmd.asker_id is not None:
        try:
            consume_quota(uow, cmd.asker_id, "replies_per_day")
        except QuotaExceeded as exceeded:  # two questions raced for the last reply of the day
            failure = AssistantReplyFailure(
                message_id=cmd.message_id,
                session_id=cmd.session_id,
                reason="quota_exceeded",
                detail=str(exceeded),
                partial_content="",
                sources=[],
                asker_id=cmd.asker_id,
            )
            uow.add(failure)
            return failure
    reply = AssistantReply(
        message_id=cmd.message_id,
        session_id=cmd.session_id,
        content=cmd.content,
        status=cmd.status,
        provider=cmd.provider,
        model=cmd.model,
        prompt_tokens=cmd.prompt_tokens,
        completion_tokens=cmd.completion_tokens,
        latency_ms=cmd.latency_ms,
        sources=list(cmd.sources),
        asker_id=cmd.asker_id,
    )
    uow.add(reply)
    return reply


def record_reply_failure(uow: UnitOfWork, cmd: RecordReplyFailure) -> AssistantReply | AssistantReplyFailure:
    if cmd.reason not in FAILURE_REASONS:
        raise InvalidValue("reason", f"reason must be one of {', '.join(FAILURE_REASONS)}")
    existing = _existing(uow, cmd.message_id)
    if existing is not None:
        return existing
    failure = AssistantReplyFailure(
        message_id=cmd.message_id,
        session_id=cmd.session_id,
        reason=cmd.reason,
        detail=cmd.detail[:500],
        partial_content=cmd.partial_content,
        sources=list(cmd.sources),
        asker_id=cmd.asker_id,
    )
    uow.add(failure)
    return failure


HANDLERS = {RecordReply: record_reply, RecordReplyFailure: record_reply_failure}

"""The assistant's answer to one user message: completed (or cancelled, with the text it had)
or failed with a reason. Both kinds derive their id from the message they answer, so the event
store holds at most one outcome per message."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import event

from domain.aggregate import ChronicleAggregate

REPLY_STATUSES = ("completed", "cancelled")
FAILURE_REASONS = ("provider_error", "timeout", "interrupted", "invalid_response", "quota_exceeded")


def reply_id_for(message_id: UUID) -> UUID:
    return uuid5(message_id, "assistant-reply")


class AssistantReply(ChronicleAggregate):
    @staticmethod
    def create_id(message_id: UUID) -> UUID:
        return reply_id_for(message_id)

    class AssistantReplyCompleted(ChronicleAggregate.Created):
        """Version 2 added `asker_id` (whose question it answers: the reply's content is sealed
        with their key, so it is erased with them); version 1 replies have none."""

        class_version = 2
        message_id: UUID
        session_id: UUID
        content: str
        status: str
        provider: str
        model: str
        prompt_tokens: int
        completion_tokens: int
        latency_ms: int
        sources: list[dict[str, str]]
        asker_id: UUID | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["asker_id"] = None

    @event(AssistantReplyCompleted)
    def __init__(
        self,
        message_id: UUID,
        session_id: UUID,
        content: str,
        status: str,
        provider: str,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        latency_ms: int,
        sources: list[dict[str, str]],
        asker_id: UUID | None,
    ) -> None:
        self.message_id = message_id
        self.session_id = session_id
        self.content = content
        self.status = status
        self.provider = provider
        self.model = model
        self.sources = sources


class AssistantReplyFailure(ChronicleAggregate):
    @staticmethod
    def create_id(message_id: UUID) -> UUID:
        return reply_id_for(message_id)

    class AssistantReplyFailed(ChronicleAggregate.Created):
        """Version 2 added `asker_id` (see `AssistantReplyCompleted`). Version 3 added `sources`,
        what the text so far drew on, as a completed reply has them: the partial text may quote
        others, and is sealed with their keys too."""

        class_version = 3
        message_id: UUID
        session_id: UUID
        reason: str
        detail: str
        partial_content: str
        sources: list[dict[str, str]]
        asker_id: UUID | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["asker_id"] = None

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            state["sources"] = []

    @event(AssistantReplyFailed)
    def __init__(
        self,
        message_id: UUID,
        session_id: UUID,
        reason: str,
        detail: str,
        partial_content: str,
        sources: list[dict[str, str]],
        asker_id: UUID | None,
    ) -> None:
        self.message_id = message_id
        self.session_id = session_id
        self.reason = reason
        self.detail = detail

"""Invitations: a one-time sign-up link an admin issues for one address and role.

Only a hash of the link's secret is recorded; the link itself is shown once, to the admin who
issued it. The address is sealed with the invitation's own key, destroyed once the invitation
is used (the new user's registration then holds the address, under their key)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import event

from domain.aggregate import ChronicleAggregate
from domain.provenance import clock
from domain.user import LinkNotValid, normalize_email, require_role


class Invitation(ChronicleAggregate):
    @classmethod
    def issue(cls, email: str, role: str, secret_hash: str, expires_at: datetime) -> Invitation:
        return cls(email=normalize_email(email), role=require_role(role), secret_hash=secret_hash, expires_at=expires_at)

    class InvitationIssued(ChronicleAggregate.Created):
        email: str
        role: str
        secret_hash: str
        expires_at: datetime

    @event(InvitationIssued)
    def __init__(self, email: str, role: str, secret_hash: str, expires_at: datetime) -> None:
        self.email = email
        self.role = role
        self.secret_hash = secret_hash
        self.expires_at = expires_at
        self.accepted_by: UUID | None = None

    def require_open(self, secret_hash: str) -> None:
        if self.accepted_by is not None or clock.now() >= self.expires_at or secret_hash != self.secret_hash:
            raise LinkNotValid()

    def accept(self, secret_hash: str, user_id: UUID) -> None:
        self.require_open(secret_hash)
        self._accepted(user_id=user_id)

    class InvitationAccepted(ChronicleAggregate.Event):
        user_id: UUID

    @event(InvitationAccepted)
    def _accepted(self, user_id: UUID) -> None:
        self.accepted_by = user_id

"""One-time links an admin issues: an invitation to sign up (for one address and role), and a
password reset. A link is `/invite/<token>` or `/reset/<token>`, the token being the
aggregate's id and a random secret; only the secret's hash is recorded, so the log never holds
a usable link. Each is recorded as an event with the admin as actor; using one is recorded too."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

import anyio
import msgspec
from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException

from application.accounts import AcceptInvitation, IssueInvitation, IssuePasswordReset, ResetPassword
from application.command_bus import CommandBus
from application.passwords import PASSWORD_MAX, PASSWORD_MIN, hash_password
from domain.invitation import Invitation
from infrastructure.web.accounts import UserView, _from_aggregate, tokens_revoked
from infrastructure.web.auth import Principal, admin_only
from infrastructure.web.commands import execute
from infrastructure.web.edge_types import Email, Role, name
from infrastructure.web.rate_limits import password_work
from infrastructure.write_side import WriteSide

INVITATION_DAYS = 7
RESET_HOURS = 1
Password = Annotated[str, msgspec.Meta(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)]


class NewInvitation(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    role: Role = "user"


class IssuedLink(msgspec.Struct, omit_defaults=True):
    token: str
    url: str
    expires_at: datetime
    position: int
    email: str | None = None
    role: str | None = None


class InvitationView(msgspec.Struct):
    email: str
    role: str
    expires_at: datetime


class InvitationAnswer(msgspec.Struct, forbid_unknown_fields=True):
    display_name: Annotated[str, name(100)]
    password: Password


class NewPassword(msgspec.Struct, forbid_unknown_fields=True):
    new_password: Password


def _new_secret() -> tuple[str, str]:
    secret = secrets.token_urlsafe(24)
    return secret, _hash(secret)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _parse(token: str) -> tuple[UUID, str]:
    """`<id hex>.<secret>`; anything else is a link that does not exist."""
    head, _, secret = token.partition(".")
    try:
        if len(head) != 32 or not secret or len(secret) > 100:
            raise ValueError
        return UUID(hex=head), secret
    except ValueError:
        raise NotFoundException("no such link") from None


class AdminLinksController(Controller):
    path = "/api/admin"
    tags = ["admin"]
    guards = [admin_only]

    @post("/invitations", status_code=201)
    async def invite(self, data: NewInvitation, bus: CommandBus, request: Request[Principal, Any, Any]) -> IssuedLink:
        """A one-time sign-up link for this address and role, valid for 7 days; shown once."""
        secret, digest = _new_secret()
        expires = datetime.now(UTC) + timedelta(days=INVITATION_DAYS)
        outcome = await execute(bus, request, IssueInvitation(data.email, data.role, digest, expires))
        invitation: Invitation = outcome.value
        token = f"{invitation.id.hex}.{secret}"
        return IssuedLink(token, f"/invite/{token}", expires, outcome.position, invitation.email, invitation.role)

    @post("/users/{user_id:uuid}/password-reset", status_code=201)
    async def reset_link(self, user_id: UUID, bus: CommandBus, request: Request[Principal, Any, Any]) -> IssuedLink:
        """A one-time link to set a new password, valid for an hour; a newer one replaces it."""
        secret, digest = _new_secret()
        expires = datetime.now(UTC) + timedelta(hours=RESET_HOURS)
        outcome = await execute(bus, request, IssuePasswordReset(user_id, digest, expires))
        token = f"{user_id.hex}.{secret}"
        return IssuedLink(token, f"/reset/{token}", expires, outcome.position)


class PublicLinksController(Controller):
    path = "/api/auth"
    tags = ["auth"]

    @get("/invitations/{token:str}", exclude_from_auth=True, problems=(410,))
    async def invitation(self, token: str, write: WriteSide) -> InvitationView:
        """What an invitation is for; 404 for an unknown link, 410 when used or expired."""
        invitation_id, secret = _parse(token)
        invitation = await anyio.to_thread.run_sync(_find_invitation, write, invitation_id)
        if invitation is None:
            raise NotFoundException("no such link")
        invitation.require_open(_hash(secret))
        return InvitationView(invitation.email, invitation.role, invitation.expires_at)

    @post("/invitations/{token:str}", status_code=201, guards=[password_work], exclude_from_auth=True, problems=(410,))
    async def accept(
        self,
        token: str,
        data: InvitationAnswer,
        bus: CommandBus,
        write: WriteSide,
        request: Request[Any, Any, Any],
    ) -> UserView:
        """Creates the invited account (sign in afterwards as usual)."""
        invitation_id, secret = _parse(token)
        password_hash = await anyio.to_thread.run_sync(hash_password, data.password)
        outcome = await execute(bus, request, AcceptInvitation(invitation_id, _hash(secret), data.display_name, password_hash))
        await anyio.to_thread.run_sync(write.keys.destroy, invitation_id.hex)
        return _from_aggregate(outcome.value, outcome.position)

    @post("/password-reset/{token:str}", status_code=204, guards=[password_work], exclude_from_auth=True, problems=(410,))
    async def reset(self, token: str, data: NewPassword, bus: CommandBus, request: Request[Any, Any, Any]) -> None:
        """Sets a new password with a reset link, once; every earlier token of the user ends."""
        user_id, secret = _parse(token)
        password_hash = await anyio.to_thread.run_sync(hash_password, data.new_password)
        outcome = await execute(bus, request, ResetPassword(user_id, _hash(secret), password_hash))
        await tokens_revoked(request, user_id, outcome.position)  # the 204 means earlier tokens are refused


def _find_invitation(write: WriteSide, invitation_id: UUID) -> Invitation | None:
    try:
        found = write.reader.repository.get(invitation_id)
    except Exception:  # noqa: BLE001 - AggregateNotFoundError: an unknown link
        return None
    return found if isinstance(found, Invitation) else None

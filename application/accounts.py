"""Use cases of users: register, change role or password, disable, and authenticate."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from application.chronicle import Chronicle
from application.unit_of_work import UnitOfWork
from domain.aggregate import ChronicleAggregate, NotFound
from domain.invitation import Invitation
from domain.user import (
    EmailAlreadyRegistered,
    EmailClaim,
    LinkNotValid,
    User,
    email_claim_id,
    normalize_email,
)


class UserNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("no such user")


@dataclass(frozen=True)
class RegisterUser:
    email: str
    display_name: str
    password_hash: str
    role: str = "user"


@dataclass(frozen=True)
class ChangePassword:
    user_id: UUID
    password_hash: str


@dataclass(frozen=True)
class SetQuotas:
    user_id: UUID
    messages_per_day: int | None
    replies_per_day: int | None
    storage_bytes: int | None


@dataclass(frozen=True)
class EraseUser:
    user_id: UUID
    email_claim_id: UUID | None = None
    """Read before the key was destroyed (afterwards the address reads as erased): the claim
    to release, so that the address may be registered again."""


@dataclass(frozen=True)
class ChangeUser:
    """An admin's change of a user's role and access, applied all or nothing: a refused part
    (enabling an erased user) leaves the other unrecorded too."""

    user_id: UUID
    role: str | None = None
    disabled: bool | None = None


@dataclass(frozen=True)
class IssueInvitation:
    email: str
    role: str
    secret_hash: str
    expires_at: datetime


@dataclass(frozen=True)
class AcceptInvitation:
    invitation_id: UUID
    secret_hash: str
    display_name: str
    password_hash: str


@dataclass(frozen=True)
class IssuePasswordReset:
    user_id: UUID
    secret_hash: str
    expires_at: datetime


@dataclass(frozen=True)
class ResetPassword:
    user_id: UUID
    secret_hash: str
    password_hash: str


def issue_invitation(uow: UnitOfWork, cmd: IssueInvitation) -> Invitation:
    email = normalize_email(cmd.email)
    claim = uow.find(EmailClaim, email_claim_id(email))
    if claim is not None and not getattr(claim, "released", False):
        raise EmailAlreadyRegistered(email)
    invitation = Invitation.issue(email, cmd.role, cmd.secret_hash, cmd.expires_at)
    uow.add(invitation)
    return invitation


def accept_invitation(uow: UnitOfWork, cmd: AcceptInvitation) -> User:
    """Registers the invited person with the invitation's address and role, once."""
    invitation = uow.find(Invitation, cmd.invitation_id)
    if invitation is None:
        raise LinkNotValid()
    invitation.require_open(cmd.secret_hash)
    user = register_user(uow, RegisterUser(invitation.email, cmd.display_name, cmd.password_hash, invitation.role))
    invitation.accept(cmd.secret_hash, user.id)
    return user


def issue_password_reset(uow: UnitOfWork, cmd: IssuePasswordReset) -> User:
    user = uow.get(User, cmd.user_id, UserNotFound())
    user.issue_password_reset(cmd.secret_hash, cmd.expires_at)
    return user


def reset_password(uow: UnitOfWork, cmd: ResetPassword) -> User:
    user = uow.find(User, cmd.user_id)
    if user is None:
        raise LinkNotValid()
    user.reset_password(cmd.secret_hash, cmd.password_hash)
    return user


@dataclass(frozen=True)
class SignOut:
    user_id: UUID


def sign_out(uow: UnitOfWork, cmd: SignOut) -> User:
    user = uow.get(User, cmd.user_id, UserNotFound())
    user.sign_out()
    return user


def register_user(uow: UnitOfWork, cmd: RegisterUser) -> User:
    email = normalize_email(cmd.email)
    claim = uow.find(EmailClaim, email_claim_id(email))
    if claim is not None and not getattr(claim, "released", False):
        raise EmailAlreadyRegistered(email)
    user = User.register(email, cmd.display_name, cmd.role, cmd.password_hash)
    uow.add(user)
    if claim is None:
        uow.add(EmailClaim(email=email, user_id=user.id))
    else:
        claim.reclaim(email, user.id)  # its earlier user was erased
    return user


def change_password(uow: UnitOfWork, cmd: ChangePassword) -> User:
    user = uow.get(User, cmd.user_id, UserNotFound())
    user.change_password(cmd.password_hash)
    return user


def set_quotas(uow: UnitOfWork, cmd: SetQuotas) -> User:
    user = uow.get(User, cmd.user_id, UserNotFound())
    user.set_quotas(cmd.messages_per_day, cmd.replies_per_day, cmd.storage_bytes)
    return user


def erase_user(uow: UnitOfWork, cmd: EraseUser) -> User:
    """The data key is destroyed by the caller first (infrastructure); this records the fact."""
    user = uow.get(User, cmd.user_id, UserNotFound())
    user.erase()
    claim = uow.find(EmailClaim, cmd.email_claim_id) if cmd.email_claim_id is not None else None
    if isinstance(claim, EmailClaim) and claim.user_id == user.id:
        claim.release()
    return user


def change_user(uow: UnitOfWork, cmd: ChangeUser) -> User:
    user = uow.get(User, cmd.user_id, UserNotFound())
    if cmd.role is not None:
        user.change_role(cmd.role)
    if cmd.disabled is True:
        user.disable()
    elif cmd.disabled is False:
        user.enable()
    return user


def user_by_email(app: Chronicle, email: str) -> User | None:
    """Looks the user up in the write model, so a login right after registering works."""
    try:
        claim: EmailClaim = app.repository.get(email_claim_id(email))  # the id is derived from the address
        user: ChronicleAggregate = app.repository.get(claim.user_id)
    except AggregateNotFoundError:
        return None
    return user if isinstance(user, User) else None


HANDLERS = {
    IssueInvitation: issue_invitation,
    AcceptInvitation: accept_invitation,
    IssuePasswordReset: issue_password_reset,
    ResetPassword: reset_password,
    SignOut: sign_out,
    SetQuotas: set_quotas,
    EraseUser: erase_user,
    RegisterUser: register_user,
    ChangePassword: change_password,
    ChangeUser: change_user,
}

"""Users: who may log in, under which role."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import event

from domain.aggregate import ChronicleAggregate, Conflict, InvalidValue, require_name
from domain.provenance import clock

ROLES = ("user", "admin", "auditor")
ERASED = "[erased]"
"""What a personal field reads as once its owner was erased (their data key destroyed)."""
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class EmailAlreadyRegistered(Conflict):
    def __init__(self, email: str) -> None:
        super().__init__(f"the email {email!r} is already registered")


class LinkNotValid(Conflict):
    """A one-time link (invitation, password reset) used, expired, or not this link's secret:
    the same answer for each, so a guess learns nothing."""

    def __init__(self) -> None:
        super().__init__("this link is not valid any more; ask an administrator for a new one")


class UserIsDisabled(Conflict):
    def __init__(self) -> None:
        super().__init__("the user is disabled")


def normalize_email(email: str) -> str:
    """NFKC-normalised and trimmed; no control or format characters."""
    if not isinstance(email, str):
        raise InvalidValue("email", "email must be a valid address")
    email = unicodedata.normalize("NFKC", email).strip()
    if len(email) > 254 or not _EMAIL.match(email) or any(unicodedata.category(c) in ("Cc", "Cf") for c in email):
        raise InvalidValue("email", "email must be a valid address")
    return email


def require_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidValue("role", f"role must be one of {', '.join(ROLES)}")
    return role


class User(ChronicleAggregate):
    class UserRegistered(ChronicleAggregate.Created):
        email: str
        display_name: str
        role: str
        password_hash: str

    @event(UserRegistered)
    def __init__(self, email: str, display_name: str, role: str, password_hash: str) -> None:
        self.email = email
        self.display_name = display_name
        self.role = role
        self.password_hash = password_hash
        self.disabled = False

    @classmethod
    def register(cls, email: str, display_name: str, role: str, password_hash: str) -> User:
        return cls(
            email=normalize_email(email),
            display_name=require_name("display_name", display_name, max_length=100),
            role=require_role(role),
            password_hash=password_hash,
        )

    def change_role(self, role: str) -> None:
        require_role(role)
        if getattr(self, "erased", False):
            raise Conflict("an erased user's role cannot be changed")
        if role != self.role:
            self._role_changed(role=role)

    class UserRoleChanged(ChronicleAggregate.Event):
        role: str

    @event(UserRoleChanged)
    def _role_changed(self, role: str) -> None:
        self.role = role
        self._revoke()

    @property
    def token_generation(self) -> int:
        """Counts what ends every token issued before it: a role or password change, disabling,
        erasure, signing out. A token carries the generation it was issued at and is refused
        once the user's generation has moved past it."""
        return getattr(self, "_token_generation", 0)

    def _revoke(self) -> None:
        self._token_generation = self.token_generation + 1

    def sign_out(self) -> None:
        """Ends every session of this user (every token issued so far)."""
        self._signed_out()

    class UserSignedOut(ChronicleAggregate.Event):
        pass

    @event(UserSignedOut)
    def _signed_out(self) -> None:
        self._revoke()

    def change_password(self, password_hash: str) -> None:
        if self.disabled:
            raise UserIsDisabled()
        self._password_changed(password_hash=password_hash)

    class UserPasswordChanged(ChronicleAggregate.Event):
        password_hash: str

    @event(UserPasswordChanged)
    def _password_changed(self, password_hash: str) -> None:
        self.password_hash = password_hash
        self._reset: tuple[str, datetime] | None = None  # (secret hash, expiry) of the live reset link
        self._revoke()

    def issue_password_reset(self, secret_hash: str, expires_at: datetime) -> None:
        """A one-time link to set a new password; a newer one replaces it."""
        if getattr(self, "erased", False):
            raise Conflict("the user is erased")
        self._password_reset_issued(secret_hash=secret_hash, expires_at=expires_at)

    class PasswordResetIssued(ChronicleAggregate.Event):
        secret_hash: str
        expires_at: datetime

    @event(PasswordResetIssued)
    def _password_reset_issued(self, secret_hash: str, expires_at: datetime) -> None:
        self._reset = (secret_hash, expires_at)

    def reset_password(self, secret_hash: str, password_hash: str) -> None:
        """Sets the password with the latest reset link, once, before it expires (then it is
        spent: the password change ends it and every token)."""
        reset = getattr(self, "_reset", None)
        if reset is None or reset[0] != secret_hash or clock.now() >= reset[1] or self.disabled:
            raise LinkNotValid()
        self._password_changed(password_hash=password_hash)

    def set_quotas(self, messages_per_day: int | None, replies_per_day: int | None, storage_bytes: int | None) -> None:
        """Limits set by an admin; None is no limit."""
        quotas = (
            require_quota("messages_per_day", messages_per_day),
            require_quota("replies_per_day", replies_per_day),
            require_quota("storage_bytes", storage_bytes),
        )
        if quotas != self.quotas:
            self._quotas_set(messages_per_day=quotas[0], replies_per_day=quotas[1], storage_bytes=quotas[2])

    @property
    def quotas(self) -> tuple[int | None, int | None, int | None]:
        return getattr(self, "_quotas", (None, None, None))

    class UserQuotasSet(ChronicleAggregate.Event):
        messages_per_day: int | None
        replies_per_day: int | None
        storage_bytes: int | None

    @event(UserQuotasSet)
    def _quotas_set(self, messages_per_day: int | None, replies_per_day: int | None, storage_bytes: int | None) -> None:
        self._quotas = (messages_per_day, replies_per_day, storage_bytes)

    def erase(self) -> None:
        """Records that the person's data key was destroyed: their personal fields now read
        as erased everywhere. An erased user is disabled for good."""
        if getattr(self, "erased", False):
            raise Conflict("the user is already erased")
        self._erased()

    class UserErased(ChronicleAggregate.Event):
        pass

    @event(UserErased)
    def _erased(self) -> None:
        self.erased = True
        self.disabled = True
        self._revoke()

    def disable(self) -> None:
        if not self.disabled:
            self._disabled()

    class UserDisabled(ChronicleAggregate.Event):
        pass

    @event(UserDisabled)
    def _disabled(self) -> None:
        self.disabled = True
        self._revoke()

    def enable(self) -> None:
        if getattr(self, "erased", False):
            raise Conflict("an erased user cannot be enabled again")
        if self.disabled:
            self._enabled()

    class UserEnabled(ChronicleAggregate.Event):
        pass

    @event(UserEnabled)
    def _enabled(self) -> None:
        self.disabled = False


QUOTAS = ("messages_per_day", "replies_per_day", "storage_bytes")


QUOTA_MAX = 2**53 - 1
"""The largest limit: exact in a JavaScript number and within every store's 64-bit integers (a
larger one, once in the log, would stop the projection that stores it)."""


def require_quota(field: str, value: int | None) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= QUOTA_MAX):
        raise InvalidValue(field, f"{field} must be a whole number from 0 to {QUOTA_MAX}, or null for no limit")
    return value


class EmailClaim(ChronicleAggregate):
    """Reserves an email address for one user, so registration is unique across processes.

    Its id is derived from the case-folded address: a second claim of the same address
    collides with the first in the event store and cannot be saved.
    """

    @staticmethod
    def create_id(email: str) -> UUID:
        return email_claim_id(email)

    class EmailClaimed(ChronicleAggregate.Created):
        email: str
        user_id: UUID

    @event(EmailClaimed)
    def __init__(self, email: str, user_id: UUID) -> None:
        self.user_id = user_id
        self.released = False

    def release(self) -> None:
        """Its user was erased: the address may be registered again."""
        if not getattr(self, "released", False):
            self._released()

    class EmailReleased(ChronicleAggregate.Event):
        pass

    @event(EmailReleased)
    def _released(self) -> None:
        self.released = True

    def reclaim(self, email: str, user_id: UUID) -> None:
        if not getattr(self, "released", False):
            raise EmailAlreadyRegistered(email)
        self._reclaimed(email=email, user_id=user_id)

    class EmailReclaimed(ChronicleAggregate.Event):
        email: str
        user_id: UUID

    @event(EmailReclaimed)
    def _reclaimed(self, email: str, user_id: UUID) -> None:
        self.user_id = user_id
        self.released = False


def canonical_email(email: str) -> str:
    """The same for every spelling of one address: NFKC (a fullwidth `ａ` is `a`), case-folded."""
    return unicodedata.normalize("NFKC", email.strip()).casefold()


def email_claim_id(email: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"chronicle:email:{canonical_email(email)}")

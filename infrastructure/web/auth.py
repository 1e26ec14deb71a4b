"""Authentication (HS256 JWTs through Litestar's JWTCookieAuth: a bearer header for API clients,
an httpOnly cookie for the browser) and the role guards.

A token carries the user's token generation at issue; it is refused once the user's generation
has moved on (password or role change, disabling, erasure, signing out), and whenever its
subject has no user row."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Self
from uuid import UUID

import msgspec
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.security.jwt import JWTCookieAuth, Token

from infrastructure.web.read_your_writes import ProjectionProgress
from projections.storage import ReadConnection
from projections.users import principal_of

AUTH_COOKIE = "chronicle_token"


class Principal(msgspec.Struct, frozen=True):
    id: UUID
    role: str
    token_generation: int = 0


def token_generation(token: Token) -> int | None:
    generation = token.extras.get("gen")
    return generation if isinstance(generation, int) and not isinstance(generation, bool) else None


def token_position(token: Token) -> int | None:
    """The users read model's position where the token was issued (claim `pos`): the user as
    the token knows them is there, on whichever node reads it."""
    position = token.extras.get("pos")
    return position if isinstance(position, int) and not isinstance(position, bool) else None


class PrincipalCache:
    """Role, disabled state and token generation as the users read model has them, cached for a few seconds
    without a query on every request; a committed change evicts the user at once (see
    `PRINCIPALS_CHANNEL`), the TTL covers changes projected by another process.

    Sign-in is read-your-writes across nodes: a token issued by another node may name a user
    (or a generation) this node's replica has not projected yet; then the look-up waits for the
    replica to reach the token's position (`pos`), as a query with `after_position` does, and
    answers 503 if it does not in time, never 401 for a valid token (ADR-041)."""

    TTL = 5.0

    def __init__(self, db: ReadConnection, progress: ProjectionProgress | None = None) -> None:
        self._db = db
        self._progress = progress
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._forgotten = 0

    def forget(self, user_id: str) -> None:
        """The user's role, disabled state or quota changed (committed): the next request reads
        it. A read already in flight may predate the change, so it is not cached (below)."""
        self._cache.pop(user_id, None)
        self._forgotten += 1

    async def principal(self, token: Token) -> Principal | None:
        """The token's user, or None: unknown subject, disabled, or a token issued before the
        user's current generation. Nothing is taken from the token's own claims but its subject."""
        principal = await self._current(token.sub)
        generation = token_generation(token)
        if generation is not None and (principal is None or generation > principal.token_generation) and await self._caught_up(token):
            principal = await self._current(token.sub)
        if principal is None or generation is None or generation < principal.token_generation:
            return None
        return principal

    async def _caught_up(self, token: Token) -> bool:
        """Waits for the users read model to reach the token's position if it is behind it;
        says whether it waited (the user must then be read again)."""
        position = token_position(token)
        if self._progress is None or position is None or self._progress.positions.get("users", 0) >= position:
            return False
        await self._progress.wait(("users",), position)
        self._cache.pop(str(token.sub), None)
        return True

    async def _current(self, user_id: str) -> Principal | None:
        now = time.monotonic()
        cached = self._cache.get(user_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            UUID(user_id)
        except (ValueError, TypeError, AttributeError):
            return None
        forgotten = self._forgotten
        row = await principal_of(self._db, user_id)
        principal = None
        if row is not None and not row["disabled"]:
            principal = Principal(UUID(row["id"]), row["role"], row["token_generation"])
        if forgotten == self._forgotten:  # no change was announced while the row was read
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[user_id] = (now + self.TTL, principal)
        return principal


@dataclass
class VerifiedToken(Token):
    """A token whose signature was verified once is remembered by its exact encoded string,
    so later requests skip PyJWT (a third of a request's CPU time) and only check expiry."""

    _verified: ClassVar[dict[tuple[str, str], Token]]
    """Set on the subclass each app's authentication makes (`jwt_auth`): no cache is shared."""

    @classmethod
    def decode(cls, encoded_token: str, secret: str, *args: Any, **kwargs: Any) -> Self:
        key = (encoded_token, secret)
        token = cls._verified.get(key)
        if token is None:
            token = super().decode(encoded_token, secret, *args, **kwargs)
            if len(cls._verified) >= 50_000:
                cls._verified.clear()
            cls._verified[key] = token
        elif token.exp <= datetime.now(UTC):
            del cls._verified[key]
            raise NotAuthorizedException("token has expired")
        return token  # type: ignore[return-value]


async def _retrieve_principal(token: Token, connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    cache: PrincipalCache = connection.app.state.principals
    principal = await cache.principal(token)
    if principal is not None:
        connection.app.state.active_users.saw(token.sub)
    return principal


def jwt_auth(secret: str, ttl_seconds: int) -> JWTCookieAuth[Principal, Token]:
    """Everything under /api needs a token (handlers that do not say `exclude_from_auth`);
    the web client's files, health, metrics and the API docs do not."""
    return JWTCookieAuth[Principal, Token](
        retrieve_user_handler=_retrieve_principal,
        token_cls=type("AppVerifiedToken", (VerifiedToken,), {"_verified": {}}),
        token_secret=secret,
        algorithm="HS256",
        default_token_expiration=timedelta(seconds=ttl_seconds),
        key=AUTH_COOKIE,
        samesite="strict",
        exclude=["^/health", "^/metrics", "^/schema"],
    )


def _requires(*roles: str):  # type: ignore[no-untyped-def]
    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if "user" not in connection.scope:  # a request authentication skipped (e.g. OPTIONS)
            raise NotAuthorizedException("this endpoint needs a signed-in user")
        if connection.user.role not in roles:
            raise PermissionDeniedException(f"this endpoint needs the role {' or '.join(roles)}")

    return guard


admin_only = _requires("admin")
auditors = _requires("admin", "auditor")

"""Registration, login, the current user, and the admin's user management."""

from __future__ import annotations

import logging
from typing import Annotated, Any
from uuid import UUID

import anyio
import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.datastructures import Cookie
from litestar.exceptions import (
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
)
from litestar.params import Parameter
from litestar.security.jwt import JWTAuth

from application.accounts import (
    ChangePassword,
    ChangeUser,
    RegisterUser,
    SetQuotas,
    SignOut,
    user_by_email,
)
from application.chronicle import Chronicle
from application.command_bus import CommandBus
from application.erasure import erase_person
from application.passwords import (
    PASSWORD_MAX,
    PASSWORD_MIN,
    hash_password,
    verify_for_no_one,
    verify_password,
)
from domain.user import User, canonical_email
from infrastructure.storage.shadow_rebuild import RebuildStopped
from infrastructure.web.auth import AUTH_COOKIE, Principal, admin_only
from infrastructure.web.commands import execute
from infrastructure.web.edge_types import AfterPosition, Cursor, Email, Role, name
from infrastructure.web.pagination import MAX_LIMIT, Page, cursor_position, page
from infrastructure.web.quotas import Quotas, Usage, usage_of
from infrastructure.web.rate_limits import DEVICE_COOKIE, RateLimited, RateLimits, login_attempts, password_work
from infrastructure.web.read_your_writes import ProjectionProgress
from infrastructure.workers.erasure import rebuild_after_erasure
from infrastructure.workers.threads import run_in_thread
from infrastructure.write_side import WriteSide
from projections.frames import session_channel
from projections.members import sessions_of_user
from projections.storage import ReadConnection
from projections.users import list_users, principal_of, sessions_count, user_by_id

Password = Annotated[str, msgspec.Meta(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)]


class ErasureStarted(msgspec.Struct):
    user_id: str
    erased: bool
    position: int


log = logging.getLogger(__name__)


class QuotasView(msgspec.Struct):
    user_id: str
    messages_per_day: int | None
    replies_per_day: int | None
    storage_bytes: int | None
    position: int


class RegisterRequest(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: Password
    display_name: Annotated[str, name(100)]


class LoginRequest(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: Annotated[str, msgspec.Meta(max_length=PASSWORD_MAX)]


class TokenResponse(msgspec.Struct):
    access_token: str
    token_type: str
    expires_in: int


class UserView(msgspec.Struct):
    id: str
    email: str
    display_name: str
    role: str
    disabled: bool = False
    created_at: str | None = None
    position: int | None = None


class PersonDetail(msgspec.Struct):
    user: UserView
    sessions: int
    usage: Usage


class UserChange(msgspec.Struct, forbid_unknown_fields=True):
    role: Role | None = None
    disabled: bool | None = None


def _from_aggregate(user: User, position: int | None) -> UserView:
    return UserView(
        id=str(user.id),
        email=user.email,
        display_name=user.display_name,
        role=user.role,
        disabled=user.disabled,
        created_at=user.created_on.isoformat(),
        position=position,
    )


def _from_row(row: dict[str, Any]) -> UserView:
    return UserView(
        id=row["id"],
        email=row["email"],
        display_name=row["display_name"],
        role=row["role"],
        disabled=bool(row["disabled"]),
        created_at=row["created_at"],
        position=row["position"],
    )


class AuthController(Controller):
    path = "/api/auth"
    tags = ["auth"]

    @post("/register", status_code=201, guards=[password_work], exclude_from_auth=True)
    async def register(self, data: RegisterRequest, bus: CommandBus, request: Request) -> UserView:
        password_hash = await anyio.to_thread.run_sync(hash_password, data.password)
        outcome = await execute(bus, request, RegisterUser(data.email, data.display_name, password_hash))
        return _from_aggregate(outcome.value, outcome.position)

    @post("/login", status_code=200, guards=[login_attempts], exclude_from_auth=True, problems=(401, 403))
    async def login(self, data: LoginRequest, event_store: Chronicle, request: Request) -> TokenResponse:
        """A bearer token for API clients. 401 wrong email or password; 403 disabled."""
        token, _ = await _sign_in(request, event_store, data)
        jwt: JWTAuth = request.app.state.jwt
        return TokenResponse(access_token=token, token_type="bearer", expires_in=int(jwt.default_token_expiration.total_seconds()))

    @post("/session", status_code=200, guards=[login_attempts], exclude_from_auth=True, problems=(401, 403))
    async def open_session(self, data: LoginRequest, event_store: Chronicle, request: Request) -> Response[UserView]:
        """Signs a browser in: the token goes into an httpOnly, SameSite=Strict cookie that
        scripts cannot read; state-changing requests then need the CSRF header."""
        token, user = await _sign_in(request, event_store, data)
        device = Cookie(
            key=DEVICE_COOKIE,
            value=request.app.state.rate_limits.device_token(str(user.id)),
            path="/api/auth/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            max_age=365 * 86400,
        )
        return Response(_from_aggregate(user, None), cookies=[auth_cookie(request, token), device])

    @get("/session", exclude_from_auth=True)
    async def current_session(self, request: Request[Any, Any, Any], db: ReadConnection) -> BrowserSession:
        """Whether this browser is signed in, and as whom: 200 either way, so a page that
        starts signed out has no failed request to report."""
        principal = await cookie_principal(request)
        row = await user_by_id(db, str(principal.id)) if principal is not None else None
        return BrowserSession(signed_in=row is not None, user=_from_row(row) if row is not None else None)

    @delete("/session", status_code=204)
    async def close_session(self, bus: CommandBus, request: Request[Principal, Any, Any]) -> Response[None]:
        """Signs out: every token issued to this user so far stops working, on every device."""
        outcome = await execute(bus, request, SignOut(request.user.id))
        await tokens_revoked(request, request.user.id, outcome.position)
        return Response(
            None, status_code=204, cookies=[Cookie(key=AUTH_COOKIE, value="", max_age=0, path="/", httponly=True, samesite="strict")]
        )


class BrowserSession(msgspec.Struct):
    signed_in: bool
    user: UserView | None


async def cookie_principal(request: Request[Any, Any, Any]) -> Principal | None:
    """The user the sign-in cookie names, checked as authentication would check it."""
    encoded = request.cookies.get(AUTH_COOKIE)
    if not encoded:
        return None
    jwt: JWTAuth = request.app.state.jwt
    try:
        token = jwt.token_cls.decode(encoded, jwt.token_secret, jwt.algorithm)
    except NotAuthorizedException:
        return None
    return await request.app.state.principals.principal(token)


async def announce_erasure(request: Request[Any, Any, Any], user_id: str) -> None:
    """Once the read models are rebuilt: every open conversation the person was in is told (an
    ephemeral `user.erased` frame), so clients reload what they show."""
    channels = request.app.state.channels
    for session_id in await sessions_of_user(request.app.state.db, user_id):
        channels.publish(
            msgspec.json.encode({"session_id": session_id, "type": "user.erased", "user_id": user_id}), session_channel(session_id)
        )


async def tokens_revoked(request: Request[Any, Any, Any], user_id: UUID, position: int) -> None:
    """Returns once the users read model has the change that ended the user's earlier tokens
    and this process has dropped what it cached: the old token is refused from now on."""
    await request.app.state.progress.wait(("users",), position)
    request.app.state.principals.forget(str(user_id))


def auth_cookie(request: Request[Any, Any, Any], token: str) -> Cookie:
    jwt: JWTAuth = request.app.state.jwt
    return Cookie(
        key=AUTH_COOKIE,
        value=token,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=int(jwt.default_token_expiration.total_seconds()),
    )


async def _sign_in(request: Request[Any, Any, Any], event_store: Chronicle, data: LoginRequest) -> tuple[str, User]:
    """Checks the password against the write model (a login right after registering works)
    and issues a token at the user's current generation, once the users read model knows the
    user (so the token is accepted by the very next request)."""

    limits: RateLimits = request.app.state.rate_limits
    account = canonical_email(data.email)  # every spelling that reaches the account counts against it

    def check() -> User | None:
        user = user_by_email(event_store, data.email)
        if user is None or not limits.known_device(request.cookies.get(DEVICE_COOKIE), str(user.id)):
            limits.check("login_account", account)  # a known browser is never locked out by others' failures
        if user is None:
            verify_for_no_one(data.password)  # same cost either way: no user enumeration
            return None
        return user if verify_password(user.password_hash, data.password) else None

    user = await anyio.to_thread.run_sync(check)
    if user is None:
        try:
            limits.hit("login_account", account)
        except RateLimited:
            pass  # this failure filled the window: the next attempt is refused
        raise NotAuthorizedException("invalid email or password")
    if user.disabled:
        raise PermissionDeniedException("this account is disabled")
    state = request.app.state
    head = await anyio.to_thread.run_sync(state.write.runner.head)
    if await principal_of(state.db, str(user.id)) is None:
        await state.progress.wait(("users",), head)
    return _token_for(request, user, head), user


def _token_for(request: Request[Any, Any, Any], user: User, position: int) -> str:
    """A token at the user's generation; `pos`, a log position at or after the user's last
    change, lets a node whose replica is behind wait for it (`PrincipalCache`)."""
    jwt: JWTAuth = request.app.state.jwt
    return jwt.create_token(identifier=str(user.id), token_extras={"role": user.role, "gen": user.token_generation, "pos": position})


class PasswordChange(msgspec.Struct, forbid_unknown_fields=True):
    current_password: Annotated[str, msgspec.Meta(max_length=PASSWORD_MAX)]
    new_password: Password


class MeController(Controller):
    path = "/api/me"
    tags = ["auth"]

    @post("/password", status_code=200, problems=(429,))
    async def change_password(
        self, data: PasswordChange, bus: CommandBus, event_store: Chronicle, request: Request[Principal, Any, Any]
    ) -> Response[UserView]:
        """Needs the current password. Every token issued before stops working; a browser
        signed in with the cookie gets a new one. Wrong current passwords are limited as failed
        sign-ins are (`login_account`), so a stolen token cannot guess freely; they are counted
        apart from the account's sign-ins, so strangers' failed sign-ins never stop the owner."""
        limits: RateLimits = request.app.state.rate_limits

        def check_and_hash() -> str | None:
            user = event_store.repository.get(request.user.id)
            account = f"password-change:{user.id}"
            limits.check("login_account", account)
            if not verify_password(user.password_hash, data.current_password):
                try:
                    limits.hit("login_account", account)
                except RateLimited:
                    pass  # this failure filled the window: the next attempt is refused
                return None
            return hash_password(data.new_password)

        new_hash = await anyio.to_thread.run_sync(check_and_hash)
        if new_hash is None:
            raise PermissionDeniedException("the current password is wrong")
        outcome = await execute(bus, request, ChangePassword(request.user.id, new_hash))
        await tokens_revoked(request, request.user.id, outcome.position)
        cookies = [auth_cookie(request, _token_for(request, outcome.value, outcome.position))] if AUTH_COOKIE in request.cookies else []
        return Response(_from_aggregate(outcome.value, outcome.position), cookies=cookies)

    @get("/usage")
    async def usage(
        self,
        request: Request[Principal, Any, Any],
        db: ReadConnection,
        progress: ProjectionProgress,
        after_position: AfterPosition = None,
    ) -> Usage:
        """Today's messages and assistant replies (UTC day), stored bytes, and your quotas."""
        await progress.wait(("users", "messages", "documents"), after_position)
        return await usage_of(db, str(request.user.id))

    @get("/")
    async def me(
        self,
        request: Request[Principal, Any, Any],
        db: ReadConnection,
        progress: ProjectionProgress,
        after_position: AfterPosition = None,
    ) -> UserView:
        await progress.wait(("users",), after_position)
        row = await user_by_id(db, str(request.user.id))
        if row is None:
            raise NotFoundException("the user is not in the read model yet; retry with after_position")
        return _from_row(row)


class AdminUsersController(Controller):
    path = "/api/admin/users"
    tags = ["admin"]
    guards = [admin_only]

    @get("/")
    async def list_users(
        self,
        db: ReadConnection,
        progress: ProjectionProgress,
        cursor: Cursor = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_LIMIT)] = 50,
        after_position: AfterPosition = None,
        q: Annotated[str | None, Parameter(max_length=254)] = None,
    ) -> Page[UserView]:
        """In registration order; `q` keeps those whose email or display name contains it."""
        await progress.wait(("users",), after_position)
        rows = await list_users(db, cursor_position(cursor), limit + 1, q)
        return page(rows, limit, _from_row)

    @get("/{user_id:uuid}")
    async def person(
        self,
        user_id: UUID,
        db: ReadConnection,
        progress: ProjectionProgress,
        after_position: AfterPosition = None,
    ) -> PersonDetail:
        """One person: who they are, how many sessions they are in, today's usage and their quotas."""
        await progress.wait(("users", "session_members", "messages", "documents"), after_position)
        row = await user_by_id(db, str(user_id))
        if row is None:
            raise NotFoundException("no such user")
        return PersonDetail(_from_row(row), await sessions_count(db, str(user_id)), await usage_of(db, str(user_id)))

    @post("/{user_id:uuid}/erase", status_code=202)
    async def erase(self, user_id: UUID, bus: CommandBus, write: WriteSide, request: Request[Principal, Any, Any]) -> ErasureStarted:
        """Destroys the user's data key and records `UserErased`; every read model is then
        rebuilt in the background (see `GET /api/admin/projections`) and their files removed."""
        outcome = await anyio.to_thread.run_sync(
            erase_person, write.reader, write.keys, lambda command: anyio.from_thread.run(execute, bus, request, command), user_id
        )
        await tokens_revoked(request, user_id, outcome.position)
        collector = request.app.state.blob_collector

        runtime = request.app.state.runtime

        async def rebuild_and_collect() -> None:
            try:
                await run_in_thread(rebuild_after_erasure, write, lambda: None, runtime.rebuild_progress)
                await collector.collect_from_loop(list(write.blobs.stored()))
                await announce_erasure(request, str(user_id))
            except RebuildStopped:
                log.info("the rebuild after erasing %s stopped with the server; the key-generation watch repeats it", user_id)
            except Exception:  # noqa: BLE001 - logged; the key-generation watch rebuilds after a restart
                log.exception("rebuilding after erasing %s failed", user_id)

        runtime.in_background(rebuild_and_collect(), f"erasure-{user_id}")
        return ErasureStarted(str(user_id), True, outcome.position)

    @put("/{user_id:uuid}/quotas")
    async def set_quotas(self, user_id: UUID, data: Quotas, bus: CommandBus, request: Request[Principal, Any, Any]) -> QuotasView:
        """`null` is no limit. Recorded as an event with the admin as its actor."""
        outcome = await execute(bus, request, SetQuotas(user_id, data.messages_per_day, data.replies_per_day, data.storage_bytes))
        messages, replies, storage = outcome.value.quotas
        return QuotasView(str(user_id), messages, replies, storage, outcome.position)

    @patch("/{user_id:uuid}")
    async def change_user(
        self, user_id: UUID, data: UserChange, bus: CommandBus, db: ReadConnection, request: Request[Principal, Any, Any]
    ) -> UserView:
        """Changes the role, disables or enables, all or nothing; an empty change answers with
        the user as they are."""
        if data.role is None and data.disabled is None:
            row = await user_by_id(db, str(user_id))
            if row is None:
                raise NotFoundException("no such user")
            return _from_row(row)
        outcome = await execute(bus, request, ChangeUser(user_id, data.role, data.disabled))
        await tokens_revoked(request, user_id, outcome.position)
        return _from_aggregate(outcome.value, outcome.position)

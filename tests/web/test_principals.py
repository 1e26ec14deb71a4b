"""A token issued by another node names a user this node's replica may not have projected yet:
the look-up waits for the replica to reach the token's position (`pos`) instead of refusing a
valid token, and refuses it only when the replica is there and still has no such user."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.security.jwt import Token

from infrastructure.web.auth import PrincipalCache
from infrastructure.web.problems import ReadModelBehind
from infrastructure.web.read_your_writes import ProjectionProgress
from tests.waiting import until

pytestmark = pytest.mark.anyio


class UsersTable:
    """The users read model as `principal_of` reads it (one row per user id)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    async def fetch_one(self, sql: str, parameters: tuple[Any, ...]) -> dict[str, Any] | None:
        assert sql.startswith("SELECT id, role, disabled, token_generation FROM users")
        return self.rows.get(parameters[0])


def token(user_id: str, generation: int, position: int | None) -> Token:
    extras: dict[str, Any] = {"role": "user", "gen": generation}
    if position is not None:
        extras["pos"] = position
    return Token(exp=datetime.now(UTC) + timedelta(hours=1), sub=user_id, extras=extras)


async def head() -> int:
    return 1_000


def setup(users_position: int, wait_seconds: float = 5.0) -> tuple[UsersTable, ProjectionProgress, PrincipalCache]:
    table = UsersTable()
    progress = ProjectionProgress({"users": users_position}, wait_seconds, head)
    return table, progress, PrincipalCache(table, progress)  # type: ignore[arg-type]  # the one query it makes


async def test_a_user_the_replica_has_not_projected_yet_is_waited_for() -> None:
    table, progress, cache = setup(users_position=5)
    user = str(uuid.uuid4())
    lookup = asyncio.create_task(cache.principal(token(user, 0, position=10)))
    await until(lambda: progress.waiting_for(10), "the look-up to find no user and wait for position 10")
    assert not lookup.done()
    table.rows[user] = {"id": user, "role": "user", "disabled": False, "token_generation": 0}
    progress.update({"users": 10})
    principal = await asyncio.wait_for(lookup, 5)
    assert principal is not None and str(principal.id) == user


async def test_a_newer_generation_than_the_replica_has_is_waited_for_and_an_older_one_refused() -> None:
    table, progress, cache = setup(users_position=5)
    user = str(uuid.uuid4())
    table.rows[user] = {"id": user, "role": "user", "disabled": False, "token_generation": 1}
    lookup = asyncio.create_task(cache.principal(token(user, 2, position=8)))  # password changed on another node
    await until(lambda: progress.waiting_for(8), "the look-up to find generation 1 and wait for position 8")
    assert not lookup.done()
    table.rows[user]["token_generation"] = 2
    progress.update({"users": 8})
    assert await asyncio.wait_for(lookup, 5) is not None
    assert await cache.principal(token(user, 1, position=8)) is None, "a token of the older generation is revoked"


async def test_a_replica_that_does_not_catch_up_in_time_answers_503_not_401() -> None:
    _, _, cache = setup(users_position=5, wait_seconds=0.05)
    with pytest.raises(ReadModelBehind):
        await cache.principal(token(str(uuid.uuid4()), 0, position=10))


@pytest.mark.parametrize("position", [5, 3, None], ids=["at the position", "past it", "a token without one"])
async def test_an_unknown_user_is_refused_at_once_when_there_is_nothing_to_wait_for(position: int | None) -> None:
    _, _, cache = setup(users_position=5)
    assert await asyncio.wait_for(cache.principal(token(str(uuid.uuid4()), 0, position)), 1) is None

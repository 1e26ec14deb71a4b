"""Leader election by a PostgreSQL advisory lock (ADR-043), two electors on one real database:
exactly one leads; the leader's lock connection terminated by the server makes it stop leading
and compete again; a leader that closes hands over; without a database the node always leads."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import anyio
import psycopg
import pytest

from infrastructure.workers.leadership import LEADER_LOCK, Leadership
from tests.postgres import fresh_database
from tests.waiting import until

pytestmark = pytest.mark.anyio


@pytest.fixture
def database_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


class Elector:
    """A `Leadership` running as a task, with the roles it went through."""

    def __init__(self, url: str | None, name: str) -> None:
        self.roles: list[bool] = []
        self.leadership = Leadership(url, self._changed, node=name, interval=0.1)
        self.task: asyncio.Task[None] | None = None

    async def _changed(self, leading: bool) -> None:
        self.roles.append(leading)

    def start(self) -> Elector:
        self.task = asyncio.get_running_loop().create_task(self.leadership.run())
        return self

    async def close(self) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await anyio.to_thread.run_sync(self.leadership.close)


def lock_holders(url: str) -> list[int]:
    """The backends holding the leader lock, as PostgreSQL sees them."""
    with psycopg.connect(url, autocommit=True) as db:
        rows = db.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = %s AND database ="
            " (SELECT oid FROM pg_database WHERE datname = current_database())",
            (LEADER_LOCK & 0xFFFFFFFF,),
        ).fetchall()
    return [row[0] for row in rows]


def terminate(url: str, pid: int) -> None:
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("SELECT pg_terminate_backend(%s)", (pid,))


async def test_exactly_one_of_two_electors_leads_and_the_other_takes_over_when_it_closes(database_url: str):
    first = Elector(database_url, "first").start()
    await until(lambda: first.leadership.leading, "the first elector to lead", timeout=10)
    second = Elector(database_url, "second").start()
    try:
        await until(lambda: second.leadership.rounds >= 5, "the second elector to try five times", timeout=10)
        assert first.leadership.leading and not second.leadership.leading and second.roles == []
        assert len(await anyio.to_thread.run_sync(lock_holders, database_url)) == 1
        await first.close()
        await until(lambda: second.leadership.leading, "the second elector to take over", timeout=5)
        assert first.roles == [True] and second.roles == [True]
        assert len(lock_holders(database_url)) == 1
    finally:
        await second.close()
        if first.task and not first.task.done():
            await first.close()


async def test_a_leader_whose_lock_connection_is_terminated_stops_leading_and_competes_again(database_url: str):
    first = Elector(database_url, "first").start()
    await until(lambda: first.leadership.leading, "the first elector to lead", timeout=10)
    second = Elector(database_url, "second").start()
    try:
        [holder] = await anyio.to_thread.run_sync(lock_holders, database_url)
        await anyio.to_thread.run_sync(terminate, database_url, holder)
        await until(lambda: first.roles[-1:] == [False] or second.leadership.leading, "the leadership to move", timeout=5)
        await until(lambda: first.leadership.leading != second.leadership.leading, "exactly one leader again", timeout=5)
        assert first.roles[:2] == [True, False], "the old leader stopped leading once its lock's session was gone"
        holders = await anyio.to_thread.run_sync(lock_holders, database_url)
        assert len(holders) == 1 and holders[0] != holder
    finally:
        await first.close()
        await second.close()


async def test_without_a_database_the_node_always_leads():
    alone = Elector(None, "sqlite").start()
    try:
        await until(lambda: alone.leadership.leading, "the node to lead")
        assert alone.leadership.role == "leader" and alone.roles == [True]
    finally:
        await alone.close()

"""Leader election by a PostgreSQL advisory lock (ADR-043), two electors on one real database:
exactly one leads; the leader's lock connection terminated by the server makes it stop leading
and compete again; a leader that closes hands over; without a database the node always leads.
And the final guard when two nodes race anyway (a stale leader and its successor): the store
keeps one outcome per reply and per conversion."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import anyio
import psycopg
import pytest

from application.accounts import RegisterUser
from application.assistant import RecordReply
from application.chat import PostMessage, StartSession
from application.documents import CompleteConversion, RequestConversion, UploadDocument
from domain.assistant_reply import reply_id_for
from domain.conversion import ConversionIsFinished
from infrastructure.bootstrap import bootstrap
from infrastructure.settings import Settings
from infrastructure.storage.postgres_keys import PostgresKeyStore
from infrastructure.workers.leadership import LEADER_LOCK, Leadership
from infrastructure.workers.log_follower import recorded_with_retries
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


async def test_a_leader_keeps_its_lock_while_every_shared_worker_thread_is_busy(database_url: str):
    """The server's other work (password hashing at sign-in, file reads) may hold all of anyio's
    shared worker threads for longer than a check may take; the checks have threads of their own,
    so a busy node is not taken for a lost database and keeps leading."""
    leader = Elector(database_url, "busy").start()
    try:
        await until(lambda: leader.leadership.leading, "the elector to lead", timeout=10)
        release = anyio.Event()
        blocked = anyio.to_thread.current_default_thread_limiter().total_tokens

        def busy() -> None:
            anyio.from_thread.run(release.wait)

        async with anyio.create_task_group() as tg:
            for _ in range(int(blocked)):
                tg.start_soon(anyio.to_thread.run_sync, busy)
            rounds = leader.leadership.rounds
            await until(lambda: leader.leadership.rounds >= rounds + 30, "thirty checks while the shared threads are busy", timeout=30)
            release.set()
        assert leader.roles == [True], "it never stopped leading"
        assert len(lock_holders(database_url)) == 1
    finally:
        await leader.close()


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


@pytest.fixture
def two_nodes(database_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch):
    """Two write sides on one database, each with its own data directory and event store, as
    two nodes have: a stale leader and a new one racing to record the same outcome."""

    monkeypatch.setenv("CHRONICLE_DATABASE_URL", database_url)
    monkeypatch.delenv("CHRONICLE_SECRET_KEY", raising=False)
    sides = [bootstrap(Settings.from_env(tmp_path / name)) for name in ("a", "b")]
    for side in sides:
        side.bus.start()
    yield sides
    for side in sides:
        side.bus.stop()
        side.close()
    store = PostgresKeyStore._open.pop(database_url, None)
    if store is not None:
        store.close()


def outcome_events(database_url: str, topic_like: str) -> Counter:
    with psycopg.connect(database_url) as db:
        rows = db.execute("SELECT originator_id FROM chronicle_events WHERE topic LIKE %s", (topic_like,)).fetchall()
    return Counter(row[0] for row in rows)


async def test_two_nodes_recording_the_same_replies_at_once_leave_one_outcome_each(two_nodes, database_url: str):
    a, b = two_nodes
    owner = (await a.bus.execute(RegisterUser("ann@example.org", "Ann", "hash"), "test")).value
    session = (await a.bus.execute(StartSession(owner.id, "Race", assistant=True), str(owner.id))).value
    messages = [(await a.bus.execute(PostMessage(session.id, owner.id, f"q{n}?"), str(owner.id))).value.message for n in range(10)]

    def reply(message_id, text: str) -> RecordReply:
        return RecordReply(message_id, session.id, text, "completed", "local", "", 0, 0, 1, asker_id=owner.id)

    results = await asyncio.gather(
        *(side.bus.execute(reply(m.id, f"from {name}"), "assistant") for m in messages for side, name in ((a, "a"), (b, "b")))
    )
    assert all(not isinstance(r, BaseException) for r in results)
    outcomes = await anyio.to_thread.run_sync(outcome_events, database_url, "%AssistantReply%")
    assert outcomes == Counter({reply_id_for(m.id): 1 for m in messages}), "one outcome per message, whoever raced"
    for m in messages:  # both callers were told of the one recorded outcome
        [first, second] = [r.value for r in results[2 * messages.index(m) : 2 * messages.index(m) + 2]]
        assert first.id == second.id == reply_id_for(m.id) and first.content == second.content


async def test_two_nodes_completing_the_same_conversion_leave_one_outcome(two_nodes, database_url: str):
    a, b = two_nodes
    owner = (await a.bus.execute(RegisterUser("ann@example.org", "Ann", "hash"), "test")).value
    document = (await a.bus.execute(UploadDocument(owner.id, "a.txt", "text/plain", 5, "0" * 64), str(owner.id))).value
    conversions = [
        (await a.bus.execute(RequestConversion(document.id, owner.id, target), str(owner.id))).value for target in ("text", "html")
    ]

    async def complete(side, conversion_id, sha: str) -> bool:
        command = CompleteConversion(conversion_id, sha, 5, None, 5, 1)
        return await recorded_with_retries(
            lambda: side.bus.execute(command, "conversion-worker"), "race", settled_by=(ConversionIsFinished,)
        )

    recorded = await asyncio.gather(*(complete(side, c.id, sha) for c in conversions for side, sha in ((a, "1" * 64), (b, "2" * 64))))
    assert recorded == [True] * 4, "each node takes the conversion as done: no retry, no second outcome"
    completed = await anyio.to_thread.run_sync(outcome_events, database_url, "%Conversion.ConversionCompleted")
    assert completed == Counter({c.id: 1 for c in conversions})

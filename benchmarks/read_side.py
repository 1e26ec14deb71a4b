"""Read side on PostgreSQL (issue 15, ADR-041): a local SQLite replica per node, or read models
shared in PostgreSQL? Two measurements, each side by side in one run (the host is shared: read
the ratios).

`queries`: the main read queries, as the server runs them, on the same data in both engines: the
SQLite read store through the server's `AioSQLiteReadConnection` and the projections' own query
functions, and PostgreSQL tables of the same columns and indexes (search: a `tsvector` column, a
GIN index, `ts_rank` and `ts_headline`) through a psycopg async pool. Per query: p50/p99 of one
request at a time, the CPU it costs (client process + PostgreSQL backends), and queries/s with
16 requests in flight.

    python -m benchmarks.read_side queries --messages 150000 --json benchmarks/results/read-side-queries.json

`startup`: a log of N events in PostgreSQL, then what a new node pays before it can serve from a
replica of its own (the projection process's runner over a fresh read.sqlite3, from position 0),
split into reading the log, decoding it and projecting; and a rebuild (shadow + swap) on the
same log. Shared read models cost a new node nothing; their rebuild runs once per cluster, and
its floor is given by loading the rows the replica ended with into PostgreSQL with COPY (a real
projector's statements cost more).

    python -m benchmarks.read_side startup --events 1000000 --json benchmarks/results/read-side-startup.json

The log is made quickly: a seed of real posts through the command bus (sealed with real data
keys, chained), then copies of their stored rows under new message ids, with their chain links,
loaded with COPY. Each copy is an ordinary `MessagePosted` (the sealed content's key is the
author's, session's and day's, which the copies share). Everything runs against the server in
`CHRONICLE_TEST_POSTGRES` (default 127.0.0.1:5432), in a database made for the run and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from benchmarks.report import save_json
from tests.postgres import fresh_database

# --- queries --------------------------------------------------------------------------------

_SYLLABLES = "ka lo mi ra te su no pe li vo da ne ri sa to mu be ga fi ho".split()
_COMMON = "launch plan harbour meeting budget review draft release customer report".split()


def _vocabulary(rng: random.Random, size: int) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))))
    return _COMMON + sorted(words)


def _dataset(messages: int, sessions: int, users: int, seed: int = 15) -> dict[str, list[tuple[Any, ...]]]:
    """Rows of the read tables the queries touch: users, sessions with 4 members each, messages
    with Zipf-distributed words (a few common, a long tail), positions in log order."""
    rng = random.Random(seed)
    words = _vocabulary(rng, 5000)
    weights = [1 / (rank + 1) for rank in range(len(words))]
    people = [str(UUID(int=rng.getrandbits(128))) for _ in range(users)]
    session_ids = [str(UUID(int=rng.getrandbits(128))) for _ in range(sessions)]
    members = {s: rng.sample(people, 4) for s in session_ids}
    position = 0
    session_rows, member_rows, message_rows, search_rows = [], [], [], []
    last: dict[str, tuple[str, str, str, int]] = {}
    count: dict[str, int] = dict.fromkeys(session_ids, 0)
    for s in session_ids:
        position += 1
        for k, user in enumerate(members[s]):
            member_rows.append((s, user, "owner" if k == 0 else "member", "2026-11-01T00:00:00+00:00", position, 0))
        session_rows.append([s, members[s][0], f"session {position}", 0, 0, "2026-11-01T00:00:00+00:00", position])
    for n in range(messages):
        position += 1
        s = session_ids[int(rng.paretovariate(1.2) * 7) % sessions] if n % 2 else rng.choice(session_ids)
        author = rng.choice(members[s])
        content = " ".join(rng.choices(words, weights, k=rng.randint(6, 30)))
        message_id = str(UUID(int=rng.getrandbits(128)))
        at = f"2026-11-{1 + n * 28 // messages:02d}T12:00:00+00:00"
        message_rows.append((position, message_id, s, author, "user", content, None, at, None, 0, 1, None, None, None))
        search_rows.append((position, content, s, message_id, author))
        last[s] = (message_id, content[:140], at, position)
        count[s] += 1
    member_rows = [(*row[:5], rng.randint(0, position)) for row in member_rows]  # everyone has read part of their sessions
    sessions_out = []
    for s, owner, title, assistant, archived, at, created in session_rows:
        message_id, preview, last_at, moved = last.get(s, (None, None, None, created))
        sessions_out.append(
            (s, owner, title, assistant, archived, at, last_at or at, count[s], message_id, preview, last_at, created, moved)
        )
    return {
        "words": [(w,) for w in words],
        "people": [(p,) for p in people],
        "sessions": sessions_out,
        "session_members": member_rows,
        "messages": message_rows,
        "message_search": search_rows,
    }


_PG_SCHEMA = (
    """CREATE TABLE sessions (
        id text PRIMARY KEY, owner_id text NOT NULL, title text NOT NULL, assistant integer NOT NULL,
        archived integer NOT NULL DEFAULT 0, created_at text NOT NULL, updated_at text NOT NULL,
        message_count integer NOT NULL DEFAULT 0, last_message_id text, last_message_preview text,
        last_message_at text, created_position bigint NOT NULL, position bigint NOT NULL)""",
    "CREATE INDEX sessions_by_created_position ON sessions(created_position)",
    """CREATE TABLE session_members (
        session_id text NOT NULL, user_id text NOT NULL, role text NOT NULL, added_at text NOT NULL,
        position bigint NOT NULL, read_position bigint NOT NULL DEFAULT 0, PRIMARY KEY (session_id, user_id))""",
    "CREATE INDEX session_members_by_user ON session_members(user_id, session_id)",
    """CREATE TABLE messages (
        position bigint PRIMARY KEY, id text NOT NULL UNIQUE, session_id text NOT NULL, author_id text NOT NULL,
        role text NOT NULL, content text, client_message_id text, created_at text NOT NULL, edited_at text,
        deleted integer NOT NULL DEFAULT 0, version integer NOT NULL, reply_to text, reply_status text, sources text)""",
    "CREATE INDEX messages_by_session ON messages(session_id, position)",
    "CREATE INDEX messages_by_author ON messages(author_id, created_at)",
    """CREATE TABLE message_search (
        row bigint PRIMARY KEY, content text, session_id text NOT NULL, message_id text NOT NULL, author_id text NOT NULL,
        tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', coalesce(content, ''))) STORED)""",
    "CREATE INDEX message_search_tsv ON message_search USING gin (tsv)",
    "CREATE INDEX message_search_by_session ON message_search (session_id)",
)
_MESSAGE_COLUMNS = (
    "id, session_id, author_id, role, content, client_message_id, created_at, edited_at,"
    " deleted, version, position, reply_to, reply_status, sources"
)
_SESSION_COLUMNS = (
    "s.id, s.owner_id, s.title, s.assistant, s.archived, s.created_at, s.updated_at,"
    " s.message_count, s.last_message_preview, s.last_message_at, s.created_position, s.position"
)
PG_IS_MEMBER = "SELECT 1 AS yes FROM session_members WHERE session_id=%s AND user_id=%s"
PG_MESSAGES_BEFORE = f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE session_id=%s AND position<%s ORDER BY position DESC LIMIT %s"
PG_SESSIONS_OF_MEMBER = (
    f"SELECT {_SESSION_COLUMNS}, (SELECT COUNT(*) FROM messages x WHERE x.session_id=s.id AND x.position>m.read_position"
    " AND x.author_id!=m.user_id AND x.deleted=0) AS unread"
    " FROM session_members m JOIN sessions s ON s.id=m.session_id"
    " WHERE m.user_id=%s AND s.created_position>%s ORDER BY s.created_position LIMIT %s"
)
PG_SEARCH_VISIBLE = (
    "WITH q AS (SELECT plainto_tsquery('english', %s) AS q),"
    " best AS (SELECT m.message_id, m.session_id, m.author_id, m.content, ts_rank(m.tsv, q.q) AS rank"
    "  FROM message_search m JOIN session_members sm ON sm.session_id = m.session_id AND sm.user_id = %s, q"
    "  WHERE m.tsv @@ q.q ORDER BY rank DESC LIMIT %s)"
    " SELECT best.message_id, best.session_id, best.author_id,"
    " ts_headline('english', best.content, q.q, 'StartSel=[, StopSel=], MaxWords=16, MinWords=8, MaxFragments=1, FragmentDelimiter=…')"
    " AS snippet, -best.rank AS rank FROM best, q ORDER BY best.rank DESC"
)
"""The search as PostgreSQL would answer it: every term (plainto_tsquery ANDs them), ranked by
ts_rank, snippets with ts_headline computed for the page only (after the LIMIT)."""
PG_SEARCH_SESSION = (
    "WITH q AS (SELECT to_tsquery('english', %s) AS q),"
    " best AS (SELECT m.message_id, m.session_id, m.author_id, m.content, ts_rank(m.tsv, q.q) AS rank"
    "  FROM message_search m, q WHERE m.session_id = %s AND m.tsv @@ q.q ORDER BY rank DESC LIMIT %s)"
    " SELECT best.message_id, best.session_id, best.author_id, best.content,"
    " ts_headline('english', best.content, q.q, 'StartSel=[, StopSel=], MaxWords=16, MinWords=8, MaxFragments=1, FragmentDelimiter=…')"
    " AS snippet, -best.rank AS rank FROM best, q ORDER BY best.rank DESC"
)
"""The local assistant's search (`search_messages`): any of the terms, in one session."""


def _load_sqlite(path: Path, data: dict[str, list[tuple[Any, ...]]]) -> None:
    from infrastructure.storage.read_store import SQLiteReadStore
    from projections.catalog import all_projectors

    store = SQLiteReadStore(path)
    store.ensure_schema(all_projectors(lambda digest, max_chars: None))
    store.close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    db.executemany("INSERT INTO sessions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", data["sessions"])
    db.executemany("INSERT INTO session_members VALUES (?,?,?,?,?,?)", data["session_members"])
    db.executemany("INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", data["messages"])
    if "session_term" in {column for _, column, *_ in db.execute("PRAGMA table_info(message_search)")}:
        # ADR-051's schema (the session's id as one term: `index_term`); the test below lets this
        # file run on the commits before it too, to compare them
        db.executemany(
            "INSERT INTO message_search (rowid, content, session_term, session_id, message_id, author_id) VALUES (?,?,?,?,?,?)",
            [(row, content, session.replace("-", ""), session, *rest) for row, content, session, *rest in data["message_search"]],
        )
    else:
        db.executemany(
            "INSERT INTO message_search (rowid, content, session_id, message_id, author_id) VALUES (?,?,?,?,?)", data["message_search"]
        )
    db.execute("COMMIT")
    db.execute("ANALYZE")
    db.close()


def _load_postgres(url: str, data: dict[str, list[tuple[Any, ...]]]) -> None:
    with psycopg.connect(url, autocommit=True) as db:
        for statement in _PG_SCHEMA:
            db.execute(statement)
        with db.cursor() as cursor:
            for table, columns in (
                ("sessions", None),
                ("session_members", None),
                ("messages", None),
                ("message_search", "(row, content, session_id, message_id, author_id)"),
            ):
                with cursor.copy(f"COPY {table} {columns or ''} FROM STDIN") as copy:
                    for row in data[table]:
                        copy.write_row(row)
        db.execute("VACUUM ANALYZE")


def _backend_cpu(pids: set[int]) -> float:
    """CPU seconds (user + system) of PostgreSQL backends, from /proc (the server is local)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _measure(
    name: str, run: Callable[[int], Awaitable[int]], samples: int, concurrency: int, seconds: float, backend_pids: set[int]
) -> dict[str, Any]:
    """`run(i)` does the i-th request and returns how many rows it gave."""
    for i in range(min(50, samples)):  # warm caches and plans
        await run(i)
    latencies, rows = [], 0
    cpu, backend = time.process_time(), _backend_cpu(backend_pids)
    for i in range(samples):
        started = time.perf_counter()
        rows += await run(i)
        latencies.append(time.perf_counter() - started)
    cpu_ms = (time.process_time() - cpu) * 1000 / samples
    backend_ms = (_backend_cpu(backend_pids) - backend) * 1000 / samples
    done = 0
    deadline = time.perf_counter() + seconds

    async def client(k: int) -> None:
        nonlocal done
        i = k * 7919
        while time.perf_counter() < deadline:
            await run(i)
            i += 1
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(concurrency)))
    per_second = done / (time.perf_counter() - started)
    ms = [x * 1000 for x in latencies]
    return {
        "query": name,
        "p50_ms": round(statistics.median(ms), 3),
        "p99_ms": round(percentile(ms, 0.99), 3),
        "cpu_ms": round(cpu_ms + backend_ms, 3),
        "client_cpu_ms": round(cpu_ms, 3),
        "rows_per_request": round(rows / samples, 1),
        f"per_second_{concurrency}_in_flight": round(per_second),
    }


async def _run_queries(
    read_path: Path, url: str, data: dict[str, list[tuple[Any, ...]]], samples: int, concurrency: int, seconds: float
) -> list[dict[str, Any]]:
    from infrastructure.storage.read_store import AioSQLiteReadConnection
    from projections.members import is_member
    from projections.messages import messages_before
    from projections.search import search_messages, search_terms, search_visible_messages
    from projections.sessions import sessions_of_member

    rng = random.Random(41)
    pairs = [(row[0], row[1]) for row in rng.sample(data["session_members"], min(2000, len(data["session_members"])))]
    people = [row[0] for row in rng.sample(data["people"], min(500, len(data["people"])))]
    words = [w for (w,) in data["words"]]
    common = [words[rng.randrange(10)] for _ in range(500)]  # one of the 10 most frequent words
    pairs_of_words = [f"{words[rng.randrange(0, 30)]} {words[rng.randrange(10, 100)]}" for _ in range(500)]
    rare = [words[rng.randrange(100, 1000)] for _ in range(500)]
    questions = [[words[rng.randrange(0, 10)], words[rng.randrange(10, 100)], words[rng.randrange(100, 1000)]] for _ in range(500)]

    sqlite_db = await AioSQLiteReadConnection.open(read_path)
    pool = AsyncConnectionPool(
        url, min_size=concurrency, max_size=concurrency, open=False, kwargs={"autocommit": True, "row_factory": dict_row}
    )
    await pool.open(wait=True)
    backend_pids: set[int] = set()
    for _ in range(concurrency):
        async with pool.connection() as connection:
            backend_pids.add(connection.info.backend_pid)

    async def pg_all(sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        async with pool.connection() as connection:
            cursor = await connection.execute(sql, params)
            return await cursor.fetchall()

    async def pg_one(sql: str, params: tuple[Any, ...]) -> dict[str, Any] | None:
        async with pool.connection() as connection:
            cursor = await connection.execute(sql, params)
            return await cursor.fetchone()

    def page_sqlite(i: int) -> Awaitable[int]:
        async def go() -> int:
            session, user = pairs[i % len(pairs)]
            assert await is_member(sqlite_db, session, user)
            return len(await messages_before(sqlite_db, session, None, 51))

        return go()

    def page_pg(i: int) -> Awaitable[int]:
        async def go() -> int:
            session, user = pairs[i % len(pairs)]
            assert await pg_one(PG_IS_MEMBER, (session, user)) is not None
            return len(await pg_all(PG_MESSAGES_BEFORE, (session, 2**62, 51)))

        return go()

    async def sessions_sqlite(i: int) -> int:
        return len(await sessions_of_member(sqlite_db, people[i % len(people)], 0, 51))

    async def sessions_pg(i: int) -> int:
        return len(await pg_all(PG_SESSIONS_OF_MEMBER, (people[i % len(people)], 0, 51)))

    def search(queries: list[str], on_pg: bool) -> Callable[[int], Awaitable[int]]:
        async def go(i: int) -> int:
            text, user = queries[i % len(queries)], people[i % len(people)]
            if on_pg:
                return len(await pg_all(PG_SEARCH_VISIBLE, (text, user, 20)))
            return len(await search_visible_messages(sqlite_db, user, search_terms(text), 20))

        return go

    async def session_search_sqlite(i: int) -> int:
        session, _ = pairs[i % len(pairs)]
        return len(await search_messages(sqlite_db, session, questions[i % len(questions)], 8))

    async def session_search_pg(i: int) -> int:
        session, _ = pairs[i % len(pairs)]
        return len(await pg_all(PG_SEARCH_SESSION, (" | ".join(questions[i % len(questions)]), session, 8)))

    results = []
    try:
        for name, on_sqlite, on_pg in (
            ("message page (membership + newest 51)", page_sqlite, page_pg),
            ("my sessions (51, with unread counts)", sessions_sqlite, sessions_pg),
            ("search: 1 common word", search(common, False), search(common, True)),
            ("search: 2 words", search(pairs_of_words, False), search(pairs_of_words, True)),
            ("search: 1 less common word", search(rare, False), search(rare, True)),
            ("the assistant's search: any of 3 words in one session, best 8", session_search_sqlite, session_search_pg),
        ):
            for engine, run, pids in (
                ("SQLite replica (aiosqlite)", on_sqlite, set()),
                ("PostgreSQL (psycopg async)", on_pg, backend_pids),
            ):
                result = await _measure(name, run, samples, concurrency, seconds, pids)
                results.append({"engine": engine, **result})
    finally:
        await sqlite_db.close()
        await pool.close()
    return results


def queries(messages: int, sessions: int, users: int, samples: int, concurrency: int, seconds: float) -> dict[str, Any]:
    data = _dataset(messages, sessions, users)
    with tempfile.TemporaryDirectory(prefix="chronicle-read-side-") as tmp, fresh_database() as url:
        read_path = Path(tmp) / "read.sqlite3"
        started = time.perf_counter()
        _load_sqlite(read_path, data)
        sqlite_load = time.perf_counter() - started
        started = time.perf_counter()
        _load_postgres(url, data)
        pg_load = time.perf_counter() - started
        rows = asyncio.run(_run_queries(read_path, url, data, samples, concurrency, seconds))
    return {
        "messages": messages,
        "sessions": sessions,
        "users": users,
        "samples": samples,
        "concurrency": concurrency,
        "load_seconds": {"sqlite": round(sqlite_load, 1), "postgresql_copy_and_index": round(pg_load, 1)},
        "queries": rows,
    }


# --- a new node's start-up ------------------------------------------------------------------


def postgres_log(url: str, data_dir: Path, events: int, seed_posts: int = 2000, sessions: int = 200) -> int:
    """Fills the database at `url` with a log of at least `events` events; returns the head."""
    from application.accounts import RegisterUser
    from application.chat import AddMember, PostMessage, StartSession
    from application.command_bus import _Pending
    from infrastructure.bootstrap import bootstrap
    from infrastructure.settings import Settings
    from infrastructure.storage.event_chain import link, session_of
    from infrastructure.storage.postgres_log import ChainedPostgresRecorder

    seed_posts = min(seed_posts, events // 2)
    os.environ["CHRONICLE_DATABASE_URL"] = url
    side = bootstrap(Settings.from_env(data_dir))
    try:
        people = [side.bus.execute_now(RegisterUser(f"p{n}@example.org", f"P{n}", "h"), "bench").value for n in range(20)]
        session_ids = []
        for n in range(sessions):
            owner = people[n % len(people)]
            session = side.bus.execute_now(StartSession(owner.id, f"S{n}", False), str(owner.id)).value
            for other in (people[(n + 1) % len(people)], people[(n + 7) % len(people)]):
                side.bus.execute_now(AddMember(session.id, owner.id, other.id), str(owner.id))
            session_ids.append((session.id, [owner.id, people[(n + 1) % len(people)].id, people[(n + 7) % len(people)].id]))
        rng = random.Random(15)
        words = _vocabulary(rng, 2000)
        for start in range(0, seed_posts, 500):
            batch = []
            for k in range(start, min(seed_posts, start + 500)):
                session_id, authors = session_ids[k % sessions]
                text = " ".join(rng.choices(words, k=rng.randint(6, 30)))
                batch.append(_Pending(PostMessage(session_id, authors[k % 3], text), "bench", "c", lambda r: None))
            side.bus._process(batch)
        recorder = side.app.recorder
        assert isinstance(recorder, ChainedPostgresRecorder)
        table = f'"{recorder.datastore.schema}"."{recorder.events_table_name}"'
        with psycopg.connect(url, autocommit=True) as db:
            seeds = db.execute(f"SELECT topic, state FROM {table} WHERE topic LIKE '%%MessagePosted' ORDER BY notification_id").fetchall()
            head, previous = db.execute("SELECT position, hash FROM event_chain ORDER BY position DESC LIMIT 1").fetchone()
            previous = bytes(previous)
            position = head
            while position < events:
                count = min(50_000, events - position)
                with db.transaction(), db.cursor() as cursor:
                    chain_rows = []
                    with cursor.copy(f"COPY {table} (notification_id, originator_id, originator_version, topic, state) FROM STDIN") as copy:
                        for _ in range(count):
                            position += 1
                            topic, state = seeds[(position * 7) % len(seeds)]
                            state = bytes(state)
                            originator = uuid4()
                            copy.write_row((position, originator, 1, topic, state))
                            previous = link(previous, position, originator.hex, 1, topic, state)
                            chain_rows.append((position, previous, session_of(originator.hex, topic, state)))
                    with cursor.copy("COPY event_chain (position, hash, session) FROM STDIN") as copy:
                        for row in chain_rows:
                            copy.write_row(row)
            db.execute(f"VACUUM ANALYZE {table}")
            db.execute("VACUUM ANALYZE event_chain")
        return position
    finally:
        side.close()
        os.environ.pop("CHRONICLE_DATABASE_URL", None)


def _database_cpu(url: str) -> dict[int, float]:
    """CPU seconds so far of every PostgreSQL backend connected to the database at `url`."""
    with psycopg.connect(url, autocommit=True) as db:
        pids = [row[0] for row in db.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")]
    return {pid: _backend_cpu({pid}) for pid in pids}


class Step:
    """Wall time and CPU time (this process, all threads, + the database's backends) of one step."""

    def __init__(self, url: str, report: dict[str, Any]) -> None:
        self.url, self.report = url, report

    def __call__(self, name: str, step: Callable[[], Any]) -> Any:
        backends, cpu, started = _database_cpu(self.url), time.process_time(), time.perf_counter()
        result = step()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        after = _database_cpu(self.url)
        backend = sum(seconds - backends.get(pid, 0.0) for pid, seconds in after.items())
        self.report[name] = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "postgres_cpu_s": round(backend, 1)}
        print(name, self.report[name], flush=True)
        return result


STEPS = ("read", "decode", "fast_decode", "catch_up", "rebuild", "copy")


def startup(events: int, steps: tuple[str, ...] = STEPS, batch: int = 2000) -> dict[str, Any]:
    from infrastructure.settings import Settings
    from infrastructure.storage.blob_store import BlobStore
    from infrastructure.storage.event_reading import EventDecoder
    from infrastructure.storage.event_store import data_keys, open_event_store
    from infrastructure.storage.read_store import SQLiteReadStore
    from infrastructure.storage.shadow_rebuild import rebuild
    from infrastructure.workers.projection_runner import ProjectionRunner
    from projections.catalog import all_projectors

    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="chronicle-read-side-") as tmp, fresh_database() as url:
        timed = Step(url, report)
        head = timed("log made (seed posts through the bus, copies by COPY)", lambda: postgres_log(url, Path(tmp) / "writer", events))
        report["events"] = head
        os.environ["CHRONICLE_DATABASE_URL"] = url
        try:
            node = Settings.from_env(Path(tmp) / "node")
            app = open_event_store(node, cached=False)
            recorder = app.recorder

            def read_only() -> int:
                at = n = 0
                while rows := recorder.select_notifications(start=at + 1, limit=batch):
                    at, n = rows[-1].id, n + len(rows)
                return n

            def read_and_decode() -> int:
                at = n = 0
                while rows := recorder.select_notifications(start=at + 1, limit=batch):
                    for row in rows:
                        app.mapper.to_domain_event(row)
                    at, n = rows[-1].id, n + len(rows)
                return n

            def read_and_fast_decode() -> int:
                decoder, at, n = EventDecoder(data_keys(app)), 0, 0
                while rows := recorder.select_notifications(start=at + 1, limit=batch):
                    for row in rows:
                        decoder.decode(row.originator_id, row.originator_version, row.topic, row.state)
                    at, n = rows[-1].id, n + len(rows)
                return n

            projectors = all_projectors(BlobStore(node.blobs_path).read_text)
            if "read" in steps:
                timed("read the log (select_notifications)", read_only)
            if "decode" in steps:
                timed("read + decode (the mapper, as the runner does)", read_and_decode)
            if "fast_decode" in steps:
                timed("read + decode (the fast decoder of ADR-038)", read_and_fast_decode)
            store = SQLiteReadStore(node.read_store_path)
            runner = ProjectionRunner(app, store, projectors, batch_size=batch)  # what the projection process runs
            if "catch_up" in steps:
                timed("new node: replica catch-up from position 0 (the projection process's runner)", runner.catch_up)
                assert min(runner.positions().values()) == head
            if "rebuild" in steps:
                timed("replica rebuild (shadow + swap), per node", lambda: rebuild(app, node.read_store_path, projectors))
            if "copy" in steps and ("catch_up" in steps or "rebuild" in steps):
                report["rows_copied"] = timed(
                    "COPY of the replica's rows into PostgreSQL (floor of writing shared read models)",
                    lambda: _copy_read_tables(node.read_store_path, projectors, url),
                )
            store.close()
            app.close()
        finally:
            os.environ.pop("CHRONICLE_DATABASE_URL", None)
    return report


def _copy_read_tables(read_path: Path, projectors: list[Any], url: str) -> int:
    """Every row of the replica's tables into PostgreSQL tables of the same names (untyped text
    columns, no indexes, no FTS tables): the floor of writing the read models there."""
    source = sqlite3.connect(read_path)
    copied = 0
    try:
        with psycopg.connect(url, autocommit=True) as db:
            db.execute("CREATE SCHEMA IF NOT EXISTS shared_read")
            for projector in projectors:
                for table in projector.tables:
                    sql = source.execute("SELECT sql FROM sqlite_master WHERE name=?", (table,)).fetchone()
                    if sql is None or "VIRTUAL" in (sql[0] or "").upper():
                        continue
                    columns = [row[1] for row in source.execute(f"PRAGMA table_info({table})")]
                    db.execute(f"CREATE TABLE shared_read.{table} ({', '.join(f'{c} text' for c in columns)})")
                    with db.cursor() as cursor, cursor.copy(f"COPY shared_read.{table} FROM STDIN") as copy:
                        for row in source.execute(f"SELECT * FROM {table}"):
                            copy.write_row([None if v is None else str(v) for v in row])
                            copied += 1
    finally:
        source.close()
    return copied


def markdown(result: dict[str, Any]) -> str:
    """The queries' figures as a Markdown table, SQLite and PostgreSQL side by side."""
    if "queries" not in result:
        return "\n".join(f"| {name} | {value} |" for name, value in result.items())
    rows = [
        "| query | engine | p50 ms | p99 ms | CPU ms (client + PostgreSQL) | rows | queries/s, 16 in flight |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["queries"]:
        per_second = next(v for k, v in r.items() if k.startswith("per_second"))
        rows.append(
            f"| {r['query']} | {r['engine']} | {r['p50_ms']} | {r['p99_ms']} | {r['cpu_ms']} | {r['rows_per_request']} | {per_second} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="part", required=True)
    q = sub.add_parser("queries")
    q.add_argument("--messages", type=int, default=150_000)
    q.add_argument("--sessions", type=int, default=2_500)
    q.add_argument("--users", type=int, default=500)
    q.add_argument("--samples", type=int, default=1000)
    q.add_argument("--concurrency", type=int, default=16)
    q.add_argument("--seconds", type=float, default=5.0)
    s = sub.add_parser("startup")
    s.add_argument("--events", type=int, default=1_000_000)
    s.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    for p in (q, s):
        p.add_argument("--json", type=Path, help="also write the result here as JSON")
    args = parser.parse_args()
    if args.part == "queries":
        result = queries(args.messages, args.sessions, args.users, args.samples, args.concurrency, args.seconds)
    else:
        result = startup(args.events, tuple(args.steps))
    print(json.dumps(result, indent=2))
    print(markdown(result))
    save_json(args.json, result)


if __name__ == "__main__":
    main()

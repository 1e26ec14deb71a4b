"""The batch path and the one-event-at-a-time path give the same read store (ADR-046).

A randomized log with every kind of event the projectors handle (messages posted, edited,
deleted; replies quoting others, failed replies; members, renames, retention, expiry, reads;
documents, attachments, conversions; an erasure, so sealed content reads as erased) is
projected by every projector:

- one event at a time: each event through the event store's own mapper (ids as `UUID`s, times
  as `datetime`s), applied alone with `Projector.apply` in a transaction of its own: the reference;
- in batches: the runner's path (the fast read path, ids and times in their stored form,
  `Projector.apply_batch`, writes sent per statement with `executemany`);
- live: the server's runner catching up as the log grows;
- rebuilt: `shadow_rebuild.rebuild` in one process, and in two (groups of projectors).

Table by table, all of them hold the same rows, and the full-text index finds the same rows."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from application.accounts import ChangePassword, ChangeUser, IssueInvitation, SetQuotas, SignOut
from application.assistant import RecordReply, RecordReplyFailure
from application.chat import ExpireContent, SetRetention, UpdateSession
from application.documents import AttachDocument, DeleteDocument, DetachDocument, RetryConversion
from domain.user import User
from infrastructure.storage import shadow_rebuild
from infrastructure.storage.read_store import SQLiteReadStore
from infrastructure.workers.projection_runner import ProjectionRunner
from projections.projector import Projector
from projections.sessions import SessionsProjector
from tests.projections.projection_log import ChatLog


def random_log(log: ChatLog, seed: int, steps: int = 90) -> list[Any]:
    """Valid commands only (a refused command appends nothing, so it would test nothing)."""
    rng = random.Random(seed)
    people = [log.user(f"p{n}@example.org", f"P{n}") for n in range(4)]
    log.run(IssueInvitation("new@example.org", "user", "hash", datetime.now(UTC) + timedelta(days=1)), "admin")
    sessions: dict[Any, set[Any]] = {}
    owners: dict[Any, Any] = {}
    for n in range(3):
        owner = rng.choice(people)
        session = log.session(owner, f"S{n}", retention_days=30) if n == 0 else log.session(owner, f"S{n}")
        sessions[session], owners[session] = {owner}, owner
    messages: list[tuple[Any, Any, Any, str]] = []  # session, author, id, content
    documents: list[tuple[Any, Any, set[Any]]] = []  # id, owner, attached sessions
    converted: set[Any] = set()
    for step in range(steps):
        session = rng.choice(list(sessions))
        members = sorted(sessions[session], key=str)
        author = rng.choice(members)
        roll = rng.random()
        if roll < 0.45 or not messages:
            content = f"note {step} about the launch plan {rng.choice(['alpha', 'beta', 'gamma'])}"
            messages.append((session, author, log.post(session, author, content), content))
        elif roll < 0.52:
            index = rng.randrange(len(messages))
            quoted_session, quoted_author, message, _ = messages[index]
            if quoted_author in sessions[quoted_session]:
                log.edit(quoted_session, message, quoted_author, f"edited {step}")
        elif roll < 0.57:
            quoted_session, quoted_author, message, _ = messages.pop(rng.randrange(len(messages)))
            if quoted_author in sessions[quoted_session]:
                log.delete(quoted_session, message, quoted_author)
        elif roll < 0.63:
            asked_session, asker, question, _ = rng.choice(messages)
            day = datetime.now(UTC).date().isoformat()
            sources = ({"kind": "message", "author_id": str(asker), "session_id": str(asked_session), "content_day": day},)
            log.run(RecordReply(question, asked_session, f"answer {step}", "completed", "local", "m", 3, 2, 5, sources, asker), "assistant")
        elif roll < 0.66:
            asked_session, asker, question, _ = rng.choice(messages)
            log.run(RecordReplyFailure(question, asked_session, "provider_error", "it broke", f"partial {step}", asker), "assistant")
        elif roll < 0.72:
            outsider = rng.choice([p for p in people if p not in sessions[session]] or [None])
            if outsider is not None:
                log.add(session, owners[session], outsider)
                sessions[session].add(outsider)
        elif roll < 0.75:
            removable = [m for m in sessions[session] if m != owners[session]]
            if removable:
                member = rng.choice(removable)
                log.remove(session, owners[session], member)
                sessions[session].discard(member)
        elif roll < 0.78:
            log.rename(session, owners[session], f"Renamed {step}")
        elif roll < 0.82:
            log.mark_read(session, author, log.head())
        elif roll < 0.88:
            document = log.upload(author, f"document {step} on the launch plan".encode(), f"d{step}.txt", session)
            documents.append((document, author, {session}))
        elif roll < 0.92 and (unconverted := [d for d in documents if d[0] not in converted]):
            document, owner, attached = rng.choice(unconverted)
            converted.add(document)  # a document converts once per target
            conversion = log.request_conversion(document, owner)
            if rng.random() < 0.6:
                log.complete_conversion(conversion, f"converted text {step} about beta")
            else:
                log.fail_conversion(conversion)
        elif roll < 0.95 and documents:
            document, owner, attached = rng.choice(documents)
            target = rng.choice([s for s in sessions if owner in sessions[s]] or [None])
            if target is not None and target not in attached:
                log.run(AttachDocument(document, target, owner), owner)
                attached.add(target)
            elif attached:
                detached = attached.pop()
                log.run(DetachDocument(document, detached, owner), owner)
        elif roll < 0.97 and documents:
            document, owner, _ = documents.pop(rng.randrange(len(documents)))
            log.run(DeleteDocument(document, owner), owner)
        else:
            log.run(SetRetention(session, owners[session], rng.choice([None, 7, 90])), owners[session])
        if step % 9 == 0:
            log.side.runner.catch_up()  # the live projection, in small batches as the log grows
    every_kind_once(log, people, owners)
    archived = rng.choice(list(sessions))
    log.archive(archived, owners[archived])
    log.run(ExpireContent(rng.choice(list(sessions)), "2000-01-01"), "retention")
    log.side.runner.catch_up()
    return people


def every_kind_once(log: ChatLog, people: list[Any], owners: dict[Any, Any]) -> None:
    """What the random steps may not have drawn: each remaining kind of event at least once."""
    session, owner = next(iter(owners.items()))
    log.run(UpdateSession(session, owner, assistant=False), owner)  # sessions start with it on or off: one of these changes it
    log.run(UpdateSession(session, owner, assistant=True), owner)
    document = log.upload(owner, b"a document on the launch plan", "kinds.txt", session)
    log.run(DetachDocument(document, session, owner), owner)
    log.complete_conversion(log.request_conversion(document, owner), "converted text about beta")
    failed = log.request_conversion(document, owner, "text")
    log.fail_conversion(failed)
    log.run(RetryConversion(failed), owner)
    user = people[2]
    log.run(ChangeUser(user, role="auditor"), "admin")
    log.run(SetQuotas(user, 10, 5, 1000), "admin")
    log.run(ChangeUser(user, disabled=True), "admin")
    log.run(ChangeUser(user, disabled=False), "admin")
    log.run(ChangePassword(user, "another hash"), user)
    log.run(SignOut(user), user)


def one_at_a_time(side: Any, projectors: list[Projector], path: Path) -> SQLiteReadStore:
    """The reference: eventsourcing's mapper, `apply` per event, a transaction per event."""
    store = SQLiteReadStore(path)
    store.ensure_schema(projectors)
    for notification in side.app.recorder.select_notifications(start=1, limit=1_000_000):
        event = side.app.mapper.to_domain_event(notification)
        with store.transaction() as tx:
            for each in projectors:
                each.apply(tx, event, notification.id)
    return store


def in_batches(side: Any, projectors: list[Projector], path: Path) -> SQLiteReadStore:
    store = SQLiteReadStore(path)
    runner = ProjectionRunner(side.app, store, projectors, batch_size=10_000)
    runner.catch_up()
    assert runner.failures == {}
    return store


def assert_same_tables(expected: dict[str, list[tuple]], actual: dict[str, list[tuple]], what: str) -> None:
    assert expected.keys() == actual.keys()
    for table in expected:
        assert actual[table] == expected[table], f"{what}: table {table} differs"


def found(store: SQLiteReadStore, word: str) -> list[tuple]:
    with store.transaction() as tx:
        rows = tx.fetch_all("SELECT rowid, message_id FROM message_search WHERE message_search MATCH ? ORDER BY rowid", (word,))
    return [tuple(row.values()) for row in rows]


def assert_every_path_agrees(side: Any, tmp_path: Path, label: str, *, live: bool) -> tuple[dict[str, list[tuple]], list[tuple]]:
    """One event at a time, in batches and (`live`) the server's own read store: the same tables."""
    projectors = side.runner.projectors
    tables = [table for each in projectors for table in each.tables]
    reference = one_at_a_time(side, projectors, tmp_path / f"reference-{label}.sqlite3")
    batched = in_batches(side, projectors, tmp_path / f"batched-{label}.sqlite3")
    expected, words = reference.dump(tables), found(reference, "launch")
    assert words, "the index should find messages about the launch"
    assert_same_tables(expected, batched.dump(tables), f"in batches ({label})")
    assert found(batched, "launch") == words
    if live:
        assert_same_tables(expected, side.read_store.dump(tables), f"live ({label})")
    reference.close()
    batched.close()
    return expected, words


def assert_rebuilt(side: Any, expected: dict[str, list[tuple]], words: list[tuple], label: str, **parallel: Any) -> None:
    projectors = side.runner.projectors
    shadow_rebuild.rebuild(side.app, side.settings.read_store_path, projectors, **parallel)
    assert_same_tables(expected, side.read_store.dump([table for each in projectors for table in each.tables]), label)
    assert found(side.read_store, "launch") == words
    assert side.runner.positions() == {each.name: side.app.recorder.max_notification_id() for each in projectors}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batches_one_event_at_a_time_live_and_rebuilt_give_the_same_read_store(write_side, tmp_path, monkeypatch, seed):
    log = ChatLog(write_side)
    people = random_log(log, seed)
    projectors = write_side.runner.projectors
    kinds = {type(event) for _, event in write_side.runner.decode(write_side.runner._log.rows_after(0, 1_000_000))}
    handled = {kind for each in projectors for kind in each.handlers}
    assert handled - {User.UserErased} <= kinds, f"the log should hold every kind of event a projector handles; missing {handled - kinds}"

    expected, words = assert_every_path_agrees(write_side, tmp_path, "before the erasure", live=True)
    assert_rebuilt(write_side, expected, words, "rebuilt in one process")

    log.erase(people[1])  # their sealed content reads as erased from now on; the read models are rebuilt
    expected, words = assert_every_path_agrees(write_side, tmp_path, "after the erasure", live=False)
    assert any("[erased]" in repr(rows) for rows in expected.values()), "the erasure should show in the read models"
    if seed == 1:  # two processes (spawned) cost seconds: once is enough
        monkeypatch.setattr(shadow_rebuild, "PARALLEL_FROM", 0)
        assert_rebuilt(write_side, expected, words, "rebuilt in two processes", settings=write_side.settings, workers=2)
    else:
        assert_rebuilt(write_side, expected, words, "rebuilt in one process after the erasure")
    write_side.runner.catch_up()
    assert_same_tables(expected, write_side.read_store.dump([t for each in projectors for t in each.tables]), "live after the rebuild")


class RefusingSessions(SessionsProjector):
    """The sessions projector with a bug: it refuses a message saying "poison" (its set-based
    batch path and its one-event handler alike)."""

    name = "refusing_sessions"

    def apply_batch(self, tx: Any, events: Any) -> None:
        if any(getattr(event, "content", None) == "poison" for _, event in events):
            raise ValueError("poisoned")
        super().apply_batch(tx, events)

    def _message_added(self, tx: Any, e: Any, position: int) -> None:
        if e.content == "poison":
            raise ValueError("poisoned")
        super()._message_added(tx, e, position)

    handlers = {**SessionsProjector.handlers, **dict.fromkeys(SessionsProjector._message_added.handles, _message_added)}  # type: ignore[attr-defined]


def test_a_refused_event_stops_the_batch_path_where_it_stops_the_one_event_path(write_side, tmp_path):
    log = ChatLog(write_side)
    ann = log.user("ann@example.org")
    session = log.session(ann)
    for n in range(12):
        log.post(session, ann, "poison" if n == 7 else f"m{n}")
    results = []
    for batch_size in (1, 5000):
        store = SQLiteReadStore(tmp_path / f"refusing-{batch_size}.sqlite3")
        runner = ProjectionRunner(write_side.app, store, [RefusingSessions()], batch_size=batch_size)
        runner.catch_up()
        results.append((runner.positions(), runner.failures, store.dump(RefusingSessions.tables)))
        store.close()
    (positions, failures, rows), (batch_positions, batch_failures, batch_rows) = results
    assert failures["refusing_sessions"].position == positions["refusing_sessions"] + 1
    assert "poisoned" in failures["refusing_sessions"].error
    assert (batch_positions, batch_failures, batch_rows) == (positions, failures, rows)
    assert rows["sessions"][0][8] == 7  # message_count (after the rowid): the seven before the poison

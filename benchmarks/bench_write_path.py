"""Micro benchmarks of the write path and the projectors (pytest-benchmark).

    .venv/bin/python -m pytest benchmarks --benchmark-enable --benchmark-json=benchmarks/results/micro.json

In the ordinary test run they execute once each (benchmarks disabled), so they cannot rot.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from application.accounts import RegisterUser
from application.chat import PostMessage, StartSession
from application.command_bus import _Pending
from infrastructure.bootstrap import bootstrap
from infrastructure.settings import Settings
from infrastructure.storage.read_store import AioSQLiteReadConnection
from projections.messages import messages_page
from projections.search import search_terms, search_visible_messages

GROUP = 100


@pytest.fixture
def side(tmp_path):
    write = bootstrap(Settings.from_env(tmp_path))
    owner = write.bus.execute_now(RegisterUser("bench@example.org", "Bench", "h"), "bench").value
    session = write.bus.execute_now(StartSession(owner.id, "Bench"), str(owner.id)).value
    write.owner, write.session = owner, session
    yield write
    write.close()


def test_group_commit_of_100_posts(benchmark, side):
    """One group of 100 concurrent posts: decide against the cached session, save once."""
    counter = itertools.count()

    def group() -> None:
        batch = [
            _Pending(PostMessage(side.session.id, side.owner.id, f"message {next(counter)}"), "bench", "c", lambda r: None)
            for _ in range(GROUP)
        ]
        side.bus._process(batch)
        assert all(not isinstance(p.result, BaseException) for p in batch)

    benchmark(group)


def test_one_post_alone(benchmark, side):
    """One post with nothing to group it with: load the session (cached), decide, save and fsync."""
    counter = itertools.count()

    def post() -> None:
        side.bus.execute_now(PostMessage(side.session.id, side.owner.id, f"message {next(counter)}"), "bench")

    benchmark(post)


def test_project_1000_posts(benchmark, side):
    """Applying a batch of 1,000 message events to every read model in one transaction."""
    for _ in range(10):
        side.bus._process([_Pending(PostMessage(side.session.id, side.owner.id, "m"), "bench", "c", lambda r: None) for _ in range(GROUP)])
    projectors = side.runner.projectors

    def rebuild() -> None:
        side.read_store.reset(projectors)
        while side.runner.catch_up_once():
            pass

    benchmark(rebuild)


def test_encode_and_decode_one_message_event(benchmark, side):
    """Event → stored bytes (content sealed with its key) → event, through the application's mapper."""
    posted = side.bus.execute_now(PostMessage(side.session.id, side.owner.id, "a message of ordinary length"), "bench")
    stored = side.app.recorder.select_notifications(start=posted.position, limit=1)[0]
    event = side.app.mapper.to_domain_event(stored)

    def roundtrip() -> object:
        return side.app.mapper.to_domain_event(side.app.mapper.to_stored_event(event))

    assert benchmark(roundtrip).content == "a message of ordinary length"


@pytest.fixture
def projected(side):
    """2,000 messages in the session, projected; and a loop with a read connection on it."""
    for n in range(20):
        side.bus._process(
            [
                _Pending(
                    PostMessage(side.session.id, side.owner.id, f"launch plan item {n}-{k} about the harbour"), "bench", "c", lambda r: None
                )
                for k in range(GROUP)
            ]
        )
    side.runner.catch_up()
    loop = asyncio.new_event_loop()
    db = loop.run_until_complete(AioSQLiteReadConnection.open(side.settings.read_store_path))
    yield side, loop, db
    loop.run_until_complete(db.close())
    loop.close()


def test_a_message_page_query(benchmark, projected):
    """One page of 50 messages from the middle of the session, as the API asks for it."""
    side, loop, db = projected
    rows = benchmark(lambda: loop.run_until_complete(messages_page(db, str(side.session.id), 1000, 51)))
    assert len(rows) == 51


def test_a_search_query(benchmark, projected):
    """Full-text search over the user's visible messages (BM25, snippets)."""
    side, loop, db = projected
    hits = benchmark(
        lambda: loop.run_until_complete(search_visible_messages(db, str(side.owner.id), search_terms("harbour plan item"), 20))
    )
    assert len(hits) == 20

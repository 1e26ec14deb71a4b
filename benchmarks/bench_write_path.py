"""Micro benchmarks of the write path and the projectors (pytest-benchmark).

    .venv/bin/python -m pytest benchmarks --benchmark-enable --benchmark-json=benchmarks/results/micro.json

In the ordinary test run they execute once each (benchmarks disabled), so they cannot rot.
"""

from __future__ import annotations

import itertools

import pytest

from application.accounts import RegisterUser
from application.chat import PostMessage, StartSession
from application.command_bus import _Pending
from infrastructure.bootstrap import bootstrap
from infrastructure.settings import Settings

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


def test_project_1000_posts(benchmark, side):
    """Applying a batch of 1,000 message events to every read model in one transaction."""
    for _ in range(10):
        side.bus._process([
            _Pending(PostMessage(side.session.id, side.owner.id, "m"), "bench", "c", lambda r: None) for _ in range(GROUP)
        ])
    projectors = side.runner.projectors

    def rebuild() -> None:
        side.read_store.reset(projectors)
        while side.runner.catch_up_once():
            pass

    benchmark(rebuild)

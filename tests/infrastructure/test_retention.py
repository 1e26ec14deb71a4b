"""Retention (infrastructure/workers/retention.py) on a real write side in tmp_path: a session's
own retention days and the global default destroy the keys of expired days only, a session's
override beats the default, each expiry is recorded as `ContentExpired`, the rebuilt read models
read the expired content as erased (who posted and when stay), and nothing is destroyed while
the sessions read model is behind the log."""

from datetime import timedelta

import pytest

from domain.chat_session import ChatSession
from domain.provenance import clock
from domain.user import ERASED
from infrastructure.workers.erasure import rebuild_after_erasure
from infrastructure.workers.retention import RetentionPostponed, apply_retention
from tests.projections.projection_log import ChatLog


@pytest.fixture
def log(write_side):
    return ChatLog(write_side)


def retain(write_side, default_days, days_later):
    today = clock.now().date() + timedelta(days=days_later)
    write_side.runner.catch_up()
    expired = apply_retention(
        write_side, today, lambda command: write_side.bus.execute_now(command, "retention"), default_days=default_days
    )
    rebuild_after_erasure(write_side, lambda: None)
    write_side.runner.catch_up()
    return expired


def contents(write_side, session):
    with write_side.read_store.transaction() as tx:
        rows = tx.fetch_all("SELECT author_id, content FROM messages WHERE session_id=? ORDER BY position", (str(session),))
    return [r["content"] for r in rows]


def test_a_sessions_retention_erases_its_old_days_only(write_side, log):
    ann = log.user("ann@example.org")
    short, unlimited = log.session(ann, "Short", retention_days=1), log.session(ann, "Unlimited")
    log.post(short, ann, "ephemeral")
    log.post(unlimited, ann, "forever")
    assert retain(write_side, None, days_later=1) == {}, "a day is kept for its full retention period"
    expired = retain(write_side, None, days_later=2)
    assert list(expired) == [str(short)] and expired[str(short)][1] == 1
    assert contents(write_side, short) == [ERASED]
    assert contents(write_side, unlimited) == ["forever"]
    session = write_side.app.repository.get(short)
    assert isinstance(session, ChatSession)
    assert any(type(e).__name__ == "ContentExpired" for e in write_side.app.events.get(short))


def test_the_default_applies_to_sessions_without_their_own_and_an_override_wins(write_side, log):
    ann = log.user("ann@example.org")
    default, longer = log.session(ann, "Default"), log.session(ann, "Longer", retention_days=30)
    log.post(default, ann, "default days")
    log.post(longer, ann, "thirty days")
    expired = retain(write_side, 3, days_later=10)
    assert list(expired) == [str(default)]
    assert (contents(write_side, default), contents(write_side, longer)) == ([ERASED], ["thirty days"])


def test_nothing_is_destroyed_while_the_sessions_read_model_is_behind(write_side, log):
    ann = log.user("ann@example.org")
    session = log.session(ann, "Short", retention_days=1)
    log.post(session, ann, "ephemeral")
    with pytest.raises(RetentionPostponed):
        apply_retention(write_side, clock.now().date() + timedelta(days=5), lambda command: None, default_days=1)
    write_side.runner.catch_up()
    assert contents(write_side, session) == ["ephemeral"]

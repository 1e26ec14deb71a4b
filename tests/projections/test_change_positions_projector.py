"""The change positions projector (`change_positions`, ADR-045): which scope each event moves,
that it covers every event the projectors behind the cached views apply, replay and rebuild
stability, and the view-state queries: in step only when the projectors agree, a generation that
goes up with every reset."""

import asyncio

from domain.chat_session import ChatSession
from infrastructure.storage.read_store import AioSQLiteReadConnection, SQLiteReadStore
from infrastructure.workers.projection_runner import ProjectionRunner
from projections.change_positions import (
    MEMBER_EVENTS,
    MESSAGE_EVENTS,
    NAME_EVENTS,
    SESSION_EVENTS,
    ChangePositionsProjector,
    member_view_state,
    session_view_state,
)
from projections.members import SessionMembersProjector
from projections.messages import SessionMessagesProjector
from projections.sessions import SessionsProjector
from tests.projections.projection_log import assert_rebuild_gives_the_same_rows, assert_replay_changes_nothing


def projector(write_side):
    """The projector under test (the `projected` fixture in conftest.py builds it)."""
    return ChangePositionsProjector()


def changed(projected) -> dict[str, int]:
    return {r["scope"]: r["position"] for r in projected.rows("SELECT scope, position FROM change_positions")}


def test_every_event_behind_a_cached_view_moves_its_scope():
    """A handler added to a view's projector without a scope here would let a stale 304 through."""
    handled = set(ChangePositionsProjector.handlers)
    assert set(SessionMessagesProjector.handlers) <= set(MESSAGE_EVENTS)
    assert set(SessionsProjector.handlers) - set(MESSAGE_EVENTS) <= set(SESSION_EVENTS)
    assert set(SessionMembersProjector.handlers) - {ChatSession.MessagesRead} <= set(SESSION_EVENTS)
    assert set(MESSAGE_EVENTS) | set(SESSION_EVENTS) | set(MEMBER_EVENTS) | set(NAME_EVENTS) <= handled


def test_each_write_moves_exactly_the_scopes_it_changed(log, projected):
    ann, bob = log.user("ann@example.org"), log.user("bob@example.org", "Bob")
    session = log.session(ann)
    log.add(session, ann, bob)
    start = changed(projected.catch_up())
    assert start[f"session:{session}"] == start[f"member:{bob}"] == log.head()
    assert f"messages:{session}" not in start

    message = log.post(session, bob, "hello")
    after_post = changed(projected.catch_up())
    assert after_post[f"messages:{session}"] == after_post[f"session:{session}"] == log.head()
    assert after_post[f"member:{bob}"] == start[f"member:{bob}"] and after_post[f"member:{ann}"] == start[f"member:{ann}"]

    log.rename(session, ann, "Renamed")
    after_rename = changed(projected.catch_up())
    assert after_rename[f"session:{session}"] == log.head() and after_rename[f"messages:{session}"] == after_post[f"messages:{session}"]

    log.mark_read(session, bob, log.head())
    after_read = changed(projected.catch_up())
    assert after_read[f"member:{bob}"] == log.head() and after_read[f"session:{session}"] == after_rename[f"session:{session}"]

    log.edit(session, message, bob, "hello again")
    log.remove(session, ann, bob)
    after_removal = changed(projected.catch_up())
    assert after_removal[f"member:{bob}"] == after_removal[f"session:{session}"] == log.head()
    assert after_removal[f"messages:{session}"] == log.head() - 1

    before_erasure = log.head()
    log.erase(bob)  # records UserErased (and what goes with it): a display name reads "[erased]" now
    assert changed(projected.catch_up())["names"] > before_erasure


def test_replay_and_rebuild_give_the_same_positions(log, projected, write_side, tmp_path):
    ann, bob = log.user("ann@example.org"), log.user("bob@example.org")
    session = log.session(ann)
    log.add(session, ann, bob)
    log.post(session, bob, "one")
    log.mark_read(session, ann, log.head())
    projected.catch_up()
    assert_replay_changes_nothing(write_side, projected, tmp_path)
    assert_rebuild_gives_the_same_rows(write_side, projected, tmp_path)


def test_views_are_in_step_only_when_their_projectors_agree_and_a_reset_moves_the_generation(log, write_side, tmp_path):
    ann = log.user("ann@example.org")
    session = log.session(ann)
    log.post(session, ann, "one")
    path = tmp_path / "views.sqlite3"
    store = SQLiteReadStore(path)
    members, messages, changes = SessionMembersProjector(), SessionMessagesProjector(), ChangePositionsProjector()
    ProjectionRunner(write_side.app, store, [members, messages, changes]).catch_up()
    names = ("messages", "session_members")

    async def states():
        db = await AioSQLiteReadConnection.open(path)
        try:
            return (
                await session_view_state(db, str(session), str(ann), ("messages:{session}",), names),
                await session_view_state(db, str(session), "someone else", ("messages:{session}",), names),
                await member_view_state(db, str(ann), names),
            )
        finally:
            await db.close()

    mine, someone, listed = asyncio.run(states())
    assert someone is None, "not a member: no state at all (404 before any cache check)"
    assert mine["in_step"] and mine["changed"] == log.head() and listed["in_step"] and listed["changed"] == log.head()
    generation = mine["generation"]

    store.reset([messages])  # what a schema change or `projections reset` does: messages start again from 0
    behind, _, listed = asyncio.run(states())
    assert not behind["in_step"] and not listed["in_step"], "messages stand at 0, the others at the head"
    assert behind["generation"] == generation + 1

    ProjectionRunner(write_side.app, store, [members, messages, changes]).catch_up()
    caught_up, _, _ = asyncio.run(states())
    assert caught_up["in_step"] and caught_up["changed"] == mine["changed"] and caught_up["generation"] == generation + 1
    store.close()

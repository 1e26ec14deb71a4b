"""The messages projector (`messages`, `message_versions`): posts, edits as new versions,
deletion clearing every version's content, assistant replies as messages, erasure after a
rebuild, replay and rebuild stability. Events come from real commands; rows from a real read store."""

from uuid import uuid4

import anyio

from application.assistant import RecordReply
from domain.assistant_reply import reply_id_for
from domain.user import ERASED
from infrastructure.storage.read_store import AioSQLiteReadConnection
from projections.messages import SessionMessagesProjector, awaits_reply, message_versions, recent_messages
from tests.projections.projection_log import (
    assert_rebuild_gives_the_same_rows,
    assert_replay_changes_nothing,
)


def projector(write_side):
    """The projector under test (the `projected` fixture in conftest.py builds it)."""
    return SessionMessagesProjector()


def messages(projected):
    return projected.rows("SELECT id, author_id, role, content, version, deleted, edited_at, reply_to FROM messages ORDER BY position")


def versions(projected, message_id):
    """What the history endpoint reads: `message_versions`, the query."""

    async def read():
        db = await AioSQLiteReadConnection.open(projected.store.path)
        try:
            return await message_versions(db, str(message_id))
        finally:
            await db.close()

    return [(r["version"], r["content"]) for r in anyio.run(read)]


def stored_versions(projected):
    return projected.rows("SELECT message_id, version FROM message_versions ORDER BY message_id, version")


def test_a_post_is_a_row_at_its_log_position_with_version_one(log, projected):
    ann = log.user("ann@example.org")
    session = log.session(ann, assistant=False)
    message = log.post(session, ann, "hello")
    projected.catch_up()
    row = projected.rows("SELECT * FROM messages")[0]
    assert (row["id"], row["session_id"], row["author_id"], row["content"]) == (str(message), str(session), str(ann), "hello")
    assert (row["role"], row["version"], row["deleted"], row["edited_at"]) == ("user", 1, 0, None)
    assert row["position"] == log.head()
    assert versions(projected, message) == [(1, "hello")]
    assert stored_versions(projected) == [], "an unedited message's one version is its row: its content is not stored twice"


def test_each_edit_adds_a_version_and_the_row_shows_the_latest(log, projected):
    ann = log.user("ann@example.org")
    session = log.session(ann, assistant=False)
    message = log.post(session, ann, "draft")
    projected.catch_up()
    log.edit(session, message, ann, "second")
    log.edit(session, message, ann, "final")
    projected.catch_up()
    [row] = messages(projected)
    assert (row["content"], row["version"]) == ("final", 3) and row["edited_at"] is not None
    assert versions(projected, message) == [(1, "draft"), (2, "second"), (3, "final")]
    assert [r["version"] for r in stored_versions(projected)] == [1, 2, 3], "the first edit stored version 1 before the row changed"


def test_a_deleted_message_keeps_its_row_but_no_content_in_any_version(log, projected):
    ann = log.user("ann@example.org")
    session = log.session(ann, assistant=False)
    gone = log.post(session, ann, "oops")
    log.edit(session, gone, ann, "oops!")
    kept = log.post(session, ann, "keep me")
    never_edited = log.post(session, ann, "and this")
    log.delete(session, gone, ann)
    log.delete(session, never_edited, ann)
    projected.catch_up()
    rows = {r["id"]: r for r in messages(projected)}
    assert (rows[str(gone)]["deleted"], rows[str(gone)]["content"]) == (1, None)
    assert versions(projected, gone) == [(1, None), (2, None)]
    assert versions(projected, never_edited) == [(1, None)]
    assert versions(projected, kept) == [(1, "keep me")]
    assert (rows[str(kept)]["deleted"], rows[str(kept)]["content"]) == (0, "keep me")


def test_a_recorded_assistant_reply_is_a_message_of_the_assistant_replying_to_the_question(log, projected):
    ann = log.user("ann@example.org")
    session = log.session(ann, assistant=False)
    question = log.post(session, ann, "what is new?")
    log.run(RecordReply(question, session, "nothing", "completed", "local", "m", 3, 1, 5, asker_id=ann), "assistant")
    projected.catch_up()
    reply = messages(projected)[1]
    assert (reply["author_id"], reply["role"], reply["content"], reply["reply_to"]) == ("assistant", "assistant", "nothing", str(question))
    assert versions(projected, reply["id"]) == [(1, "nothing")], "a reply's one version is its row"


def test_a_reply_in_the_history_names_its_askers_words(log, projected, tmp_path):
    """What the openai provider sends as context: a reply's text is sealed with its asker's key,
    so a reply that repeats it must be sealed with that key too."""
    ann, bob = log.user("ann@example.org"), log.user("bob@example.org", "Bob")
    session = log.session(ann, assistant=False)
    log.add(session, ann, bob)
    question = log.post(session, bob, "what did ann say?")
    log.run(RecordReply(question, session, "ann said so", "completed", "local", "m", 3, 1, 5, asker_id=bob), "assistant")
    projected.catch_up()

    async def history():
        db = await AioSQLiteReadConnection.open(tmp_path / "read.sqlite3")
        try:
            return await recent_messages(db, str(session), log.head() + 1, 10)
        finally:
            await db.close()

    asked, replied = anyio.run(history)
    assert (asked["role"], asked["author_id"]) == ("user", str(bob))
    assert (replied["role"], replied["author_id"], replied["content"]) == ("assistant", str(bob), "ann said so")


def test_a_reply_is_awaited_until_its_outcome_is_recorded(log, projected, tmp_path):
    """`awaits_reply`: what a node that does not lead checks before passing a cancel on."""
    ann = log.user("ann@example.org")
    session = log.session(ann, assistant=False)
    question = log.post(session, ann, "what is new?")
    projected.catch_up()

    async def awaited(reply_id):
        db = await AioSQLiteReadConnection.open(projected.store.path)
        try:
            return await awaits_reply(db, str(session), reply_id)
        finally:
            await db.close()

    assert anyio.run(awaited, reply_id_for(question)) is True
    assert anyio.run(awaited, reply_id_for(uuid4())) is False and anyio.run(awaited, question) is False
    log.run(RecordReply(question, session, "nothing", "cancelled", "local", "m", 3, 1, 5, asker_id=ann), "assistant")
    projected.catch_up()
    assert anyio.run(awaited, reply_id_for(question)) is False


def test_an_erased_authors_content_reads_as_erased_after_a_rebuild_and_others_stay(log, projected):
    ann, bob = log.user("ann@example.org"), log.user("bob@example.org", "Bob")
    session = log.session(ann, assistant=False)
    log.add(session, ann, bob)
    bobs = log.post(session, bob, "bob's secret")
    log.edit(session, bobs, bob, "bob's edited secret")
    log.post(session, ann, "ann's note")
    projected.catch_up()
    log.erase(bob)
    projected.catch_up()
    assert "bob's edited secret" in [r["content"] for r in messages(projected)], "rows change only when rebuilt"
    projected.rebuild()
    assert [r["content"] for r in messages(projected)] == [ERASED, "ann's note"]
    assert versions(projected, bobs) == [(1, ERASED), (2, ERASED)]


def test_replaying_the_log_changes_no_row(write_side, log, projected, tmp_path):
    ann = log.user("ann@example.org")
    session = log.session(ann, assistant=False)
    for i in range(10):
        message = log.post(session, ann, f"m{i}")
        if i % 3 == 0:
            log.edit(session, message, ann, f"m{i}!")
    projected.catch_up()
    assert_replay_changes_nothing(write_side, projected, tmp_path)


def test_a_rebuild_from_the_log_gives_the_same_rows(write_side, log, projected, tmp_path):
    ann = log.user("ann@example.org")
    session = log.session(ann, assistant=False)
    for i in range(10):
        message = log.post(session, ann, f"m{i}")
        if i % 3 == 0:
            log.edit(session, message, ann, f"m{i}!")
        if i % 4 == 0:
            log.delete(session, message, ann)
    projected.catch_up()
    assert_rebuild_gives_the_same_rows(write_side, projected, tmp_path)

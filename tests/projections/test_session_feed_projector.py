"""The session feed projector (`session_frames`): one stored frame per event that changes a
session, in log order, each published on the session's channel after commit; an edit is a
frame with its version; a deletion is a frame of its own and takes the content out of the
earlier frames; replies, documents and session changes; erasure after a rebuild; replay and
rebuild stability. Shared session-change frames (projections/session_changes.py) are checked here."""

from application.assistant import RecordReply, RecordReplyFailure
from domain.user import ERASED
from projections.frames import decode_frame, frame_position, session_channel
from projections.session_feed import SessionFeedProjector
from tests.projections.projection_log import (
    assert_rebuild_gives_the_same_rows,
    assert_replay_changes_nothing,
)


def projector(write_side):
    """The projector under test (the `projected` fixture in conftest.py builds it)."""
    return SessionFeedProjector()


def frames(projected, session):
    rows = projected.rows("SELECT position, body FROM session_frames WHERE session_id=? ORDER BY position", (str(session),))
    return [decode_frame(r["body"]) for r in rows]


def test_session_changes_are_frames_in_log_order(log, projected):
    ann, bob = log.user("ann@example.org"), log.user("bob@example.org")
    session = log.session(ann, "Plans", assistant=False)
    log.rename(session, ann, "Roadmap")
    log.add(session, ann, bob)
    log.remove(session, ann, bob)
    log.archive(session, ann)
    projected.catch_up()
    stored = frames(projected, session)
    assert [f.type for f in stored] == ["session.started", "session.renamed", "member.added", "member.removed", "session.archived"]
    assert stored[0].data["title"] == "Plans" and stored[0].data["owner_id"] == str(ann)
    assert stored[2].data == {"user_id": str(bob)}
    assert [f.position for f in stored] == sorted(f.position for f in stored)


def test_a_post_and_its_edit_are_frames_with_content_and_version(log, projected):
    ann = log.user("ann@example.org")
    session = log.session(ann, assistant=False)
    message = log.post(session, ann, "hello")
    projected.catch_up()
    (posted,) = frames(projected, session)[1:]
    assert (posted.type, posted.data["id"], posted.data["content"], posted.data["version"]) == ("message.posted", str(message), "hello", 1)
    log.edit(session, message, ann, "hello!")
    projected.catch_up()
    posted, edited = frames(projected, session)[1:]
    assert (edited.type, edited.data["content"], edited.data["version"]) == ("message.edited", "hello!", 2)
    assert posted.data["content"] == "hello!", "a replay shows members no earlier version: those are for the author and the owner"


def test_a_message_keeps_its_posted_frame_with_its_latest_text_and_its_latest_edit(log, projected):
    ann = log.user("ann@example.org")
    session = log.session(ann, assistant=False)
    message = log.post(session, ann, "first")
    log.edit(session, message, ann, "second")
    projected.catch_up()
    log.edit(session, message, ann, "third")
    log.edit(session, message, ann, "fourth")  # both in one batch
    projected.catch_up()
    stored = frames(projected, session)[1:]
    assert [(f.type, f.data["version"]) for f in stored] == [("message.posted", 1), ("message.edited", 4)], "the latest edit says it all"
    assert {f.data["content"] for f in stored} == {"fourth"}


def test_a_deletion_is_a_frame_and_takes_the_content_out_of_the_earlier_frames(log, projected):
    ann = log.user("ann@example.org")
    session = log.session(ann, assistant=False)
    message = log.post(session, ann, "oops")
    log.edit(session, message, ann, "oops!")
    projected.catch_up()
    log.delete(session, message, ann)
    projected.catch_up()
    posted, edited, deleted = frames(projected, session)[1:]
    assert posted.data["content"] is None and edited.data["content"] is None
    assert (deleted.type, deleted.data) == ("message.deleted", {"id": str(message)})


def test_reply_outcomes_and_documents_are_frames_of_the_session(log, projected):
    ann = log.user("ann@example.org")
    session = log.session(ann, assistant=False)
    answered, failed = log.post(session, ann, "why?"), log.post(session, ann, "how?")
    log.run(RecordReply(answered, session, "because", "completed", "local", "m", 1, 1, 1, asker_id=ann), "assistant")
    log.run(RecordReplyFailure(failed, session, "timeout", "too slow", asker_id=ann), "assistant")
    log.upload(ann, b"doc", session=session)
    projected.catch_up()
    kinds = {f.type: f for f in frames(projected, session)}
    assert kinds["reply.completed"].data["content"] == "because" and kinds["reply.completed"].data["reply_to"] == str(answered)
    assert kinds["reply.failed"].data["reason"] == "timeout"
    assert "document.attached" in kinds


def test_every_stored_frame_is_published_on_its_session_channel_with_its_position_first(log, projected):
    ann = log.user("ann@example.org")
    session = log.session(ann, assistant=False)
    log.post(session, ann, "hi")
    published = []
    projected.runner.on_publish = published.extend
    projected.catch_up()
    stored = projected.rows("SELECT position, body FROM session_frames ORDER BY position")
    assert published == [(session_channel(str(session)), r["body"]) for r in stored]
    assert [frame_position(body) for _, body in published] == [r["position"] for r in stored]


def test_an_erased_authors_frames_read_as_erased_after_a_rebuild(log, projected):
    ann, bob = log.user("ann@example.org"), log.user("bob@example.org")
    session = log.session(ann, assistant=False)
    log.add(session, ann, bob)
    log.post(session, bob, "bob's words")
    log.post(session, ann, "ann's words")
    log.erase(bob)
    projected.rebuild()
    contents = [f.data["content"] for f in frames(projected, session) if f.type == "message.posted"]
    assert contents == [ERASED, "ann's words"]


def scenario(log):
    ann, bob = log.user("ann@example.org"), log.user("bob@example.org")
    session = log.session(ann, assistant=False)
    log.add(session, ann, bob)
    for n in range(6):
        message = log.post(session, ann if n % 2 else bob, f"m{n}")
        if n % 3 == 0:
            log.edit(session, message, ann if n % 2 else bob, f"m{n}!")
        if n == 4:
            log.delete(session, message, ann)
    log.rename(session, ann, "Renamed")


def test_replaying_the_log_changes_no_row(write_side, log, projected, tmp_path):
    scenario(log)
    projected.catch_up()
    assert_replay_changes_nothing(write_side, projected, tmp_path)


def test_a_rebuild_from_the_log_gives_the_same_rows(write_side, log, projected, tmp_path):
    scenario(log)
    projected.catch_up()
    assert_rebuild_gives_the_same_rows(write_side, projected, tmp_path)

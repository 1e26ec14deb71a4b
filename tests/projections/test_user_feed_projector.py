"""The user feed projector (`user_frames` and its bookkeeping tables): each member gets the
session changes of the sessions they are in (a removed member gets their removal, then
nothing), a reader alone gets their read marker, an owner gets their documents and the
progress of their conversions; replay and rebuild stability."""

from application.documents import DeleteDocument
from domain.user import ERASED
from projections.frames import decode_frame, user_channel
from projections.user_feed import UserFeedProjector
from tests.projections.projection_log import (
    assert_rebuild_gives_the_same_rows,
    assert_replay_changes_nothing,
)


def projector(write_side):
    """The projector under test (the `projected` fixture in conftest.py builds it)."""
    return UserFeedProjector()


def kinds(projected, user):
    rows = projected.rows("SELECT body FROM user_frames WHERE user_id=? ORDER BY position", (str(user),))
    return [decode_frame(r["body"]).type for r in rows]


def test_members_get_the_changes_of_their_sessions_and_a_removed_member_stops_getting_them(log, projected):
    ann, bob, cy = log.user("ann@example.org"), log.user("bob@example.org"), log.user("cy@example.org")
    session = log.session(ann)
    log.add(session, ann, bob)
    log.remove(session, ann, bob)
    log.rename(session, ann, "After")
    projected.catch_up()
    assert kinds(projected, ann) == ["session.started", "member.added", "member.removed", "session.renamed"]
    assert kinds(projected, bob) == ["member.added", "member.removed"]
    assert kinds(projected, cy) == []


def test_only_the_reader_gets_their_read_marker(log, projected):
    ann, bob = log.user("ann@example.org"), log.user("bob@example.org")
    session = log.session(ann)
    log.add(session, ann, bob)
    log.post(session, ann, "hi")
    log.mark_read(session, bob, log.head())
    projected.catch_up()
    assert "session.read" in kinds(projected, bob) and "session.read" not in kinds(projected, ann)


def test_an_owner_follows_their_documents_and_conversions(log, projected):
    ann = log.user("ann@example.org")
    document = log.upload(ann, b"hello", "notes.txt")
    done = log.request_conversion(document, ann, "markdown")
    log.complete_conversion(done, "# hello")
    broken = log.request_conversion(document, ann, "html")
    log.fail_conversion(broken)
    projected.catch_up()
    assert kinds(projected, ann) == [
        "document.uploaded",
        "conversion.pending",
        "conversion.running",
        "conversion.completed",
        "conversion.pending",
        "conversion.running",
        "conversion.failed",
    ]


def test_after_a_documents_deletion_its_conversions_send_nothing(log, projected):
    ann = log.user("ann@example.org")
    document = log.upload(ann, b"hello")
    conversion = log.request_conversion(document, ann)
    log.run(DeleteDocument(document, ann), ann)
    log.fail_conversion(conversion, "document_deleted")
    projected.catch_up()
    assert kinds(projected, ann) == ["document.uploaded", "conversion.pending", "document.deleted"]


def test_each_frame_is_published_on_its_users_channel(log, projected):
    ann = log.user("ann@example.org")
    log.session(ann)
    published = []
    projected.runner.on_publish = published.extend
    projected.catch_up()
    [(channel, body)] = published
    assert channel == user_channel(str(ann)) and decode_frame(body).type == "session.started"


def test_an_erased_owners_filenames_read_as_erased_after_a_rebuild(log, projected):
    bob = log.user("bob@example.org")
    log.upload(bob, b"bob's", "bob-private.txt")
    log.erase(bob)
    projected.rebuild()
    rows = projected.rows("SELECT body FROM user_frames WHERE user_id=?", (str(bob),))
    assert [decode_frame(r["body"]).data["filename"] for r in rows] == [ERASED]


def scenario(log):
    ann, bob = log.user("ann@example.org"), log.user("bob@example.org")
    for n in range(3):
        session = log.session(ann, f"S{n}")
        log.add(session, ann, bob)
        log.post(session, ann, "hi")
        log.mark_read(session, bob, log.head())
        if n == 1:
            log.remove(session, bob, bob)
    document = log.upload(bob, b"bob's")
    log.complete_conversion(log.request_conversion(document, bob), "text")


def test_replaying_the_log_changes_no_row(write_side, log, projected, tmp_path):
    scenario(log)
    projected.catch_up()
    assert_replay_changes_nothing(write_side, projected, tmp_path)


def test_a_rebuild_from_the_log_gives_the_same_rows(write_side, log, projected, tmp_path):
    scenario(log)
    projected.catch_up()
    assert_rebuild_gives_the_same_rows(write_side, projected, tmp_path)

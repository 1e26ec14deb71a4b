"""The session members projector (`session_members`): the owner from the start, members added
and removed (and added again), read markers per member; replay and rebuild stability."""

from projections.members import SessionMembersProjector
from tests.projections.projection_log import (
    assert_rebuild_gives_the_same_rows,
    assert_replay_changes_nothing,
)


def projector(write_side):
    """The projector under test (the `projected` fixture in conftest.py builds it)."""
    return SessionMembersProjector()


def members(projected, session):
    rows = projected.rows("SELECT user_id, role FROM session_members WHERE session_id=? ORDER BY position", (str(session),))
    return [(r["user_id"], r["role"]) for r in rows]


def test_the_owner_is_the_first_member_of_a_new_session(log, projected):
    ann = log.user("ann@example.org")
    session = log.session(ann)
    projected.catch_up()
    assert members(projected, session) == [(str(ann), "owner")]


def test_added_members_appear_and_a_removed_member_is_gone(log, projected):
    ann, bob, cy = log.user("ann@example.org"), log.user("bob@example.org"), log.user("cy@example.org")
    session = log.session(ann)
    log.add(session, ann, bob)
    log.add(session, ann, cy)
    projected.catch_up()
    assert members(projected, session) == [(str(ann), "owner"), (str(bob), "member"), (str(cy), "member")]
    log.remove(session, ann, bob)
    projected.catch_up()
    assert members(projected, session) == [(str(ann), "owner"), (str(cy), "member")]


def test_a_member_added_again_after_leaving_is_one_row_with_a_fresh_read_marker(log, projected):
    ann, bob = log.user("ann@example.org"), log.user("bob@example.org")
    session = log.session(ann)
    log.add(session, ann, bob)
    log.post(session, ann, "hi")
    log.mark_read(session, bob, log.head())
    log.remove(session, bob, bob)
    log.add(session, ann, bob)
    projected.catch_up()
    rows = projected.rows("SELECT read_position FROM session_members WHERE session_id=? AND user_id=?", (str(session), str(bob)))
    assert rows == [{"read_position": 0}]


def test_a_read_marker_is_kept_per_member(log, projected):
    ann, bob = log.user("ann@example.org"), log.user("bob@example.org")
    session = log.session(ann)
    log.add(session, ann, bob)
    log.post(session, ann, "one")
    read_to = log.head()
    log.post(session, ann, "two")
    log.mark_read(session, bob, read_to)
    projected.catch_up()
    rows = projected.rows("SELECT user_id, read_position FROM session_members WHERE session_id=?", (str(session),))
    assert {r["user_id"]: r["read_position"] for r in rows} == {str(ann): 0, str(bob): read_to}


def scenario(log):
    ann, bob, cy = log.user("ann@example.org"), log.user("bob@example.org"), log.user("cy@example.org")
    for n in range(3):
        session = log.session(ann, f"S{n}")
        log.add(session, ann, bob)
        log.add(session, ann, cy)
        log.post(session, ann, "hi")
        log.mark_read(session, bob, log.head())
        if n == 1:
            log.remove(session, ann, cy)


def test_replaying_the_log_changes_no_row(write_side, log, projected, tmp_path):
    scenario(log)
    projected.catch_up()
    assert_replay_changes_nothing(write_side, projected, tmp_path)


def test_a_rebuild_from_the_log_gives_the_same_rows(write_side, log, projected, tmp_path):
    scenario(log)
    projected.catch_up()
    assert_rebuild_gives_the_same_rows(write_side, projected, tmp_path)

"""The sessions projector (`sessions`, `session_retention`): a session's row from its start,
renames, assistant setting, archiving, the message count and last-message preview through
posts, edits and deletions, retention settings and expiries; replay and rebuild stability."""

from application.chat import ExpireContent, SetRetention, UpdateSession
from domain.user import ERASED
from projections.sessions import PREVIEW_LENGTH, SessionsProjector, retention_overrides
from tests.projections.projection_log import (
    assert_rebuild_gives_the_same_rows,
    assert_replay_changes_nothing,
)


def projector(write_side):
    """The projector under test (the `projected` fixture in conftest.py builds it)."""
    return SessionsProjector()


def session_row(projected, session):
    [row] = projected.rows("SELECT * FROM sessions WHERE id=?", (str(session),))
    return row


def test_a_started_session_is_a_row_with_its_owner_title_and_settings(log, projected):
    ann = log.user("ann@example.org")
    session = log.session(ann, "Plans", assistant=False)
    projected.catch_up()
    row = session_row(projected, session)
    assert (row["owner_id"], row["title"], row["assistant"], row["archived"], row["message_count"]) == (str(ann), "Plans", 0, 0, 0)
    assert row["created_position"] == row["position"] == log.head()


def test_rename_assistant_setting_and_archive_update_the_row_and_its_position(log, projected):
    ann = log.user("ann@example.org")
    session = log.session(ann, "Plans", assistant=False)
    log.rename(session, ann, "Roadmap")
    log.run(UpdateSession(session, ann, assistant=True), ann)
    log.archive(session, ann)
    projected.catch_up()
    row = session_row(projected, session)
    assert (row["title"], row["assistant"], row["archived"]) == ("Roadmap", 1, 1)
    assert row["position"] == log.head() and row["created_position"] < row["position"]


def test_the_count_and_preview_follow_posts_edits_and_deletions(log, projected):
    ann = log.user("ann@example.org")
    session = log.session(ann, assistant=False)
    first = log.post(session, ann, "first")
    last = log.post(session, ann, "x" * (PREVIEW_LENGTH + 50))
    projected.catch_up()
    row = session_row(projected, session)
    assert row["message_count"] == 2 and row["last_message_preview"] == "x" * PREVIEW_LENGTH
    log.edit(session, first, ann, "an edit of an older message leaves the preview")
    log.edit(session, last, ann, "latest, edited")
    projected.catch_up()
    assert session_row(projected, session)["last_message_preview"] == "latest, edited"
    log.delete(session, last, ann)
    projected.catch_up()
    row = session_row(projected, session)
    assert (row["message_count"], row["last_message_preview"]) == (1, None)


def test_retention_days_and_expiries_are_kept_per_session(log, projected):
    ann = log.user("ann@example.org")
    kept = log.session(ann, "Kept", retention_days=30)
    changed = log.session(ann, "Changed")
    log.run(SetRetention(changed, ann, 7), ann)
    log.run(ExpireContent(changed, "2024-01-01"), "retention")
    projected.catch_up()
    with projected.store.transaction() as tx:
        assert retention_overrides(tx) == {str(kept): 30, str(changed): 7}
    [expired] = projected.rows("SELECT expired_before FROM session_retention WHERE session_id=?", (str(changed),))
    assert expired["expired_before"] == "2024-01-01"


def test_an_expiry_is_announced_on_the_principals_channel(write_side, log, projected):
    ann = log.user("ann@example.org")
    session = log.session(ann)
    log.run(ExpireContent(session, "2024-01-01"), "retention")
    published = []
    projected.runner.on_publish = published.extend
    projected.catch_up()
    assert ("principals", str(session).encode()) in published


def test_the_preview_of_an_erased_author_reads_as_erased_after_a_rebuild(log, projected):
    ann, bob = log.user("ann@example.org"), log.user("bob@example.org", "Bob")
    session = log.session(ann, assistant=False)
    log.add(session, ann, bob)
    log.post(session, bob, "bob's last word")
    log.erase(bob)
    projected.rebuild()
    assert session_row(projected, session)["last_message_preview"] == ERASED


def scenario(log):
    ann = log.user("ann@example.org")
    for n in range(3):
        session = log.session(ann, f"S{n}", retention_days=n + 1)
        message = log.post(session, ann, f"hello {n}")
        log.edit(session, message, ann, f"hello {n}!")
        log.rename(session, ann, f"S{n} renamed")
        if n == 1:
            log.delete(session, message, ann)
            log.archive(session, ann)


def test_replaying_the_log_changes_no_row(write_side, log, projected, tmp_path):
    scenario(log)
    projected.catch_up()
    assert_replay_changes_nothing(write_side, projected, tmp_path)


def test_a_rebuild_from_the_log_gives_the_same_rows(write_side, log, projected, tmp_path):
    scenario(log)
    projected.catch_up()
    assert_rebuild_gives_the_same_rows(write_side, projected, tmp_path)

"""The users projector (`users`, `user_quotas`): registration, role changes and token
revocations (each bumps the token generation and is announced on the principals channel),
disabling and enabling, quotas, erasure; replay and rebuild stability."""

from application.accounts import ChangePassword, ChangeUser, SetQuotas, SignOut
from domain.user import ERASED
from projections.users import PRINCIPALS_CHANNEL, UsersProjector
from tests.projections.projection_log import (
    assert_rebuild_gives_the_same_rows,
    assert_replay_changes_nothing,
)


def projector(write_side):
    """The projector under test (the `projected` fixture in conftest.py builds it)."""
    return UsersProjector()


def user_row(projected, user):
    [row] = projected.rows("SELECT * FROM users WHERE id=?", (str(user),))
    return row


def test_a_registered_user_is_a_row_with_email_as_typed_name_and_role(log, projected):
    ann = log.user("Ann@Example.org", "Ann")
    projected.catch_up()
    row = user_row(projected, ann)
    assert (row["email"], row["display_name"], row["role"], row["disabled"], row["token_generation"]) == (
        "Ann@Example.org",
        "Ann",
        "user",
        0,
        0,
    )


def test_role_password_and_sign_out_each_revoke_tokens_and_tell_the_servers(log, projected):
    ann = log.user("ann@example.org")
    projected.catch_up()
    published = []
    projected.runner.on_publish = published.extend
    log.run(ChangeUser(ann, role="admin"))
    log.run(ChangePassword(ann, "new hash"))
    log.run(SignOut(ann))
    projected.catch_up()
    row = user_row(projected, ann)
    assert (row["role"], row["token_generation"]) == ("admin", 3)
    assert published.count((PRINCIPALS_CHANNEL, str(ann).encode())) == 3


def test_disable_and_enable_toggle_the_flag(log, projected):
    ann = log.user("ann@example.org")
    log.run(ChangeUser(ann, disabled=True))
    projected.catch_up()
    assert user_row(projected, ann)["disabled"] == 1
    log.run(ChangeUser(ann, disabled=False))
    projected.catch_up()
    assert user_row(projected, ann)["disabled"] == 0


def test_quotas_are_one_row_per_user_replaced_by_the_latest(log, projected):
    ann = log.user("ann@example.org")
    log.run(SetQuotas(ann, 10, 5, None))
    log.run(SetQuotas(ann, 20, None, 1000))
    projected.catch_up()
    rows = projected.rows("SELECT messages_per_day, replies_per_day, storage_bytes FROM user_quotas WHERE user_id=?", (str(ann),))
    assert rows == [{"messages_per_day": 20, "replies_per_day": None, "storage_bytes": 1000}]


def test_an_erased_user_reads_as_erased_and_disabled_at_once_and_after_a_rebuild(log, projected):
    ann, bob = log.user("ann@example.org", "Ann"), log.user("bob@example.org", "Bob")
    projected.catch_up()
    log.erase(bob)
    projected.catch_up()
    row = user_row(projected, bob)
    assert (row["email"], row["display_name"], row["disabled"]) == (ERASED, ERASED, 1)
    projected.rebuild()
    assert (user_row(projected, bob)["email"], user_row(projected, bob)["display_name"]) == (ERASED, ERASED)
    assert user_row(projected, ann)["email"] == "ann@example.org"


def scenario(log):
    users = [log.user(f"u{n}@example.org", f"U{n}") for n in range(4)]
    log.run(ChangeUser(users[0], role="admin"))
    log.run(SetQuotas(users[1], 1, 2, 3))
    log.run(ChangeUser(users[2], disabled=True))
    log.erase(users[3])


def test_replaying_the_log_changes_no_row(write_side, log, projected, tmp_path):
    scenario(log)
    projected.catch_up()
    assert_replay_changes_nothing(write_side, projected, tmp_path)


def test_a_rebuild_from_the_log_gives_the_same_rows(write_side, log, projected, tmp_path):
    scenario(log)
    projected.catch_up()
    assert_rebuild_gives_the_same_rows(write_side, projected, tmp_path)

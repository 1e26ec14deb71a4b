from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from domain.invitation import Invitation
from domain.provenance import clock
from domain.user import LinkNotValid, User

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def test_an_invitation_is_accepted_once_with_its_secret_before_it_expires():
    with clock.frozen_by(lambda: NOW):
        invitation = Invitation.issue("Ivy@Example.org", "auditor", "hash-1", NOW + timedelta(days=7))
        with pytest.raises(LinkNotValid):
            invitation.accept("wrong", uuid4())
        someone = uuid4()
        invitation.accept("hash-1", someone)
        assert invitation.accepted_by == someone
        with pytest.raises(LinkNotValid):
            invitation.accept("hash-1", uuid4())
    late = Invitation.issue("late@example.org", "user", "hash-2", NOW + timedelta(days=7))
    with clock.frozen_by(lambda: NOW + timedelta(days=7)), pytest.raises(LinkNotValid):
        late.accept("hash-2", uuid4())


def test_a_password_reset_works_once_and_ends_earlier_tokens():
    user = User.register("ann@example.org", "Ann", "user", "old-hash")
    generation = user.token_generation
    with clock.frozen_by(lambda: NOW):
        user.issue_password_reset("secret-hash", NOW + timedelta(hours=1))
        user.reset_password("secret-hash", "new-hash")
        assert user.password_hash == "new-hash" and user.token_generation == generation + 1
        with pytest.raises(LinkNotValid):
            user.reset_password("secret-hash", "again")
        user.issue_password_reset("second", NOW + timedelta(hours=1))
    with clock.frozen_by(lambda: NOW + timedelta(hours=2)), pytest.raises(LinkNotValid):
        user.reset_password("second", "too-late")

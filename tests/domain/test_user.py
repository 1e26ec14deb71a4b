import pytest

from domain.aggregate import InvalidValue
from domain.user import EmailClaim, User, UserIsDisabled, email_claim_id, normalize_email


def registered(role: str = "user") -> User:
    return User.register("Ann@Example.org", "Ann", role, "hash")


def test_a_registered_user_keeps_email_display_name_and_role():
    user = registered()
    assert (user.email, user.display_name, user.role, user.disabled) == ("Ann@Example.org", "Ann", "user", False)


@pytest.mark.parametrize(
    ("email", "name", "role", "field"),
    [
        ("not-an-email", "Ann", "user", "email"),
        ("a@b.io", "", "user", "display_name"),
        ("a@b.io", "x" * 101, "user", "display_name"),
        ("a@b.io", "Ann", "root", "role"),
    ],
)
def test_registration_refuses_invalid_values_naming_the_field(email, name, role, field):
    with pytest.raises(InvalidValue) as refused:
        User.register(email, name, role, "hash")
    assert refused.value.field == field


def test_email_claims_are_case_insensitive():
    assert email_claim_id("Ann@Example.org") == email_claim_id("ann@example.ORG ")
    assert EmailClaim(email="ANN@example.org", user_id=registered().id).id == email_claim_id("ann@example.org")


def test_role_changes_password_changes_and_disabling_are_events():
    user = registered()
    user.change_role("auditor")
    user.change_password("hash2")
    user.disable()
    user.disable()
    names = [type(e).__name__ for e in user.collect_events()]
    assert names == ["UserRegistered", "UserRoleChanged", "UserPasswordChanged", "UserDisabled"]
    with pytest.raises(UserIsDisabled):
        user.change_password("hash3")
    with pytest.raises(InvalidValue):
        user.change_role("superuser")


def test_a_disabled_user_can_be_enabled_again():
    user = registered()
    user.disable()
    user.enable()
    user.enable()
    assert not user.disabled
    assert [type(e).__name__ for e in user.collect_events()][-2:] == ["UserDisabled", "UserEnabled"]


@pytest.mark.parametrize("email", ["ann\x00@example.org", "ann@exa\u202emple.org", "ann@example.org\x07", "ann @example.org"])
def test_emails_with_control_or_format_characters_are_refused(email):
    with pytest.raises(InvalidValue):
        normalize_email(email)


def test_every_spelling_of_one_address_is_one_claim():
    assert normalize_email("ａlice@example.org") == "alice@example.org"
    assert email_claim_id("ａlice@Example.org") == email_claim_id("alice@example.org")


@pytest.mark.parametrize("name", ["Ann\x00", "Ann\u202eevil", "line\nbreak"])
def test_display_names_refuse_control_and_format_characters(name):
    with pytest.raises(InvalidValue):
        User.register("ann@example.org", name, "user", "hash")


@pytest.mark.parametrize("value", [-1, 2**53, 2**64, True])
def test_quotas_out_of_range_are_refused_and_record_nothing(value):
    user = registered()
    with pytest.raises(InvalidValue) as refused:
        user.set_quotas(None, None, value)
    assert refused.value.field == "storage_bytes" and user.quotas == (None, None, None)
    user.set_quotas(0, 2**53 - 1, None)
    assert user.quotas == (0, 2**53 - 1, None)

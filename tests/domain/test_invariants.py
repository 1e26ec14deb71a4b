"""Aggregate invariants as hypothesis properties, on the domain objects alone: whatever sequence
of edits and deletions a message goes through, its version only grows and a deleted message
stays deleted; whatever members come and go, only current members may post; whatever title is
offered, a session's title is a valid one-line name or the start/rename is refused."""

from __future__ import annotations

import unicodedata
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.aggregate import DomainError
from domain.chat_session import TITLE_MAX, ChatSession
from domain.provenance import acting_as

actions = st.lists(st.tuples(st.sampled_from(["edit", "delete"]), st.text(min_size=1, max_size=20)), max_size=12)


@settings(max_examples=200, deadline=None)
@given(actions)
def test_a_messages_version_only_grows_and_a_deleted_message_stays_deleted(steps):
    owner = uuid4()
    with acting_as(str(owner), "test"):
        session = ChatSession.start(owner, "Plans")
        message = session.post_message(owner, "first")
        versions, deleted = [message.version], False
        for action, content in steps:
            try:
                if action == "edit":
                    session.edit_message(message, owner, content)
                else:
                    session.delete_message(message, owner)
            except DomainError:
                assert deleted and action == "edit", "only editing a deleted message is refused"
            deleted = deleted or action == "delete"
            versions.append(message.version)
            assert message.deleted == deleted
    assert versions == sorted(versions)
    assert len(message.collect_events()) == versions[-1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "remove"]), st.integers(0, 3)), max_size=15))
def test_only_current_members_may_post(changes):
    owner, people = uuid4(), [uuid4() for _ in range(4)]
    with acting_as(str(owner), "test"):
        session = ChatSession.start(owner, "Team")
        members = {owner}
        for change, who in changes:
            person = people[who]
            try:
                (session.add_member if change == "add" else session.remove_member)(owner, person)
            except DomainError:
                pass
            else:
                (members.add if change == "add" else members.discard)(person)
        for person in [owner, *people]:
            if person in members:
                session.post_message(person, "hello")
            else:
                with pytest.raises(DomainError):
                    session.post_message(person, "hello")


def valid_name(title: str) -> bool:
    return (
        title == unicodedata.normalize("NFC", title).strip()
        and 1 <= len(title) <= TITLE_MAX
        and not any(unicodedata.category(c) in ("Cc", "Cf") for c in title)
    )


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=220), st.text(max_size=220))
def test_a_sessions_title_is_always_a_valid_name(first, second):
    owner = uuid4()
    with acting_as(str(owner), "test"):
        try:
            session = ChatSession.start(owner, first)
        except DomainError:
            return
        assert valid_name(session.title)
        try:
            session.rename(owner, second)
        except DomainError:
            pass
        assert valid_name(session.title)

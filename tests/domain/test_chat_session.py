from datetime import UTC, datetime
from uuid import uuid4

import pytest

from domain.aggregate import Conflict, Forbidden, InvalidValue
from domain.chat_session import (
    CONTENT_MAX,
    ChatSession,
    OwnerOnly,
    SessionIsArchived,
    SessionNotFound,
)
from domain.message import Message, MessageAlreadyDeleted
from domain.provenance import acting_as, clock

OWNER, MEMBER, STRANGER = uuid4(), uuid4(), uuid4()


def started() -> ChatSession:
    session = ChatSession.start(OWNER, "Plans")
    session.add_member(OWNER, MEMBER)
    return session


def test_a_started_session_has_its_owner_as_only_member_and_the_assistant_on():
    session = ChatSession.start(OWNER, "  Plans  ")
    assert session.title == "Plans"
    assert session.members == {OWNER}
    assert session.assistant is True
    assert [type(e).__name__ for e in session.collect_events()] == ["SessionStarted"]


@pytest.mark.parametrize("title", ["", "   ", "x" * 201])
def test_a_title_must_be_1_to_200_characters(title):
    with pytest.raises(InvalidValue) as refused:
        ChatSession.start(OWNER, title)
    assert refused.value.field == "title"


def test_only_members_post_and_strangers_are_told_the_session_does_not_exist():
    session = started()
    assert session.post_message(MEMBER, "hello").content == "hello"
    with pytest.raises(SessionNotFound):
        session.post_message(STRANGER, "hello")


@pytest.mark.parametrize("content", ["", "x" * (CONTENT_MAX + 1)])
def test_content_must_be_1_to_32000_characters(content):
    with pytest.raises(InvalidValue) as refused:
        started().post_message(OWNER, content)
    assert refused.value.field == "content"


def test_content_of_exactly_32000_characters_is_accepted():
    assert len(started().post_message(OWNER, "x" * CONTENT_MAX).content) == CONTENT_MAX


def test_posting_does_not_change_the_session_so_posts_never_contend():
    session = started()
    session.collect_events()
    session.post_message(OWNER, "one")
    session.post_message(MEMBER, "two")
    assert session.pending_events == []


def test_an_archived_session_rejects_posts_and_edits_but_keeps_its_messages():
    session = started()
    message = session.post_message(MEMBER, "before")
    session.archive(OWNER)
    with pytest.raises(SessionIsArchived):
        session.post_message(MEMBER, "after")
    with pytest.raises(SessionIsArchived):
        session.edit_message(message, MEMBER, "changed")
    assert message.content == "before"


def test_only_the_owner_renames_archives_and_adds_members():
    session = started()
    with pytest.raises(OwnerOnly):
        session.rename(MEMBER, "Mine now")
    with pytest.raises(OwnerOnly):
        session.archive(MEMBER)
    with pytest.raises(OwnerOnly):
        session.add_member(MEMBER, STRANGER)
    session.rename(OWNER, "Roadmap")
    assert session.title == "Roadmap"


def test_a_member_may_leave_but_the_owner_may_not():
    session = started()
    session.remove_member(MEMBER, MEMBER)
    assert not session.is_member(MEMBER)
    with pytest.raises(Conflict):
        session.remove_member(OWNER, OWNER)


def test_a_member_may_not_remove_someone_else():
    session = started()
    session.add_member(OWNER, STRANGER)
    with pytest.raises(Forbidden):
        session.remove_member(MEMBER, STRANGER)


def test_edits_keep_every_version_as_events_and_only_the_author_may_edit():
    session = started()
    message = session.post_message(MEMBER, "v1")
    session.edit_message(message, MEMBER, "v2")
    session.edit_message(message, MEMBER, "v3")
    with pytest.raises(Forbidden):
        session.edit_message(message, OWNER, "not mine")
    contents = [getattr(e, "content", None) for e in message.collect_events()]
    assert contents == ["v1", "v2", "v3"]
    assert message.version == 3


def test_the_author_or_the_owner_may_delete_and_a_deleted_message_cannot_be_edited():
    session = started()
    mine = session.post_message(MEMBER, "mine")
    theirs = session.post_message(MEMBER, "theirs")
    session.delete_message(mine, MEMBER)
    session.delete_message(theirs, OWNER)
    assert mine.deleted and theirs.deleted
    with pytest.raises(MessageAlreadyDeleted):
        session.edit_message(mine, MEMBER, "revived")
    session.add_member(OWNER, STRANGER)
    other = session.post_message(MEMBER, "other")
    with pytest.raises(Forbidden):
        session.delete_message(other, STRANGER)


def test_a_repeated_client_message_id_from_the_same_author_gives_the_same_message_id():
    session = started()
    first = session.post_message(MEMBER, "hi", client_message_id="abc")
    again = session.post_message(MEMBER, "hi", client_message_id="abc")
    other_author = session.post_message(OWNER, "hi", client_message_id="abc")
    assert first.id == again.id
    assert other_author.id != first.id


def test_every_event_records_actor_correlation_and_the_controlled_clock():
    moment = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    with clock.frozen_by(lambda: moment), acting_as(str(OWNER), "req-42"):
        session = ChatSession.start(OWNER, "Plans")
        message = session.post_message(OWNER, "hello")
    for event in [*session.collect_events(), *message.collect_events()]:
        assert (event.actor_id, event.correlation_id, event.timestamp) == (str(OWNER), "req-42", moment)


def test_message_roles_are_checked():
    with pytest.raises(InvalidValue):
        started().post_message(OWNER, "hi", role="robot")
    assert Message.post(uuid4(), OWNER, "system", "note", None).role == "system"


def test_a_read_marker_is_recorded_only_when_it_moves_forward():
    session = started()
    before = len(session.collect_events())
    assert session.mark_read(MEMBER, 10) is True
    assert session.mark_read(MEMBER, 10) is False and session.mark_read(MEMBER, 4) is False
    assert session.mark_read(OWNER, 7) is True
    events = session.collect_events()
    assert [type(e).__name__ for e in events] == ["MessagesRead", "MessagesRead"] and before > 0
    assert session.read_markers == {MEMBER: 10, OWNER: 7}


def test_only_members_keep_read_markers_and_positions_are_whole_numbers():
    session = started()
    with pytest.raises((Forbidden, SessionNotFound)):
        session.mark_read(STRANGER, 3)
    for bad in (-1, True, 2.5):
        with pytest.raises(InvalidValue):
            session.mark_read(MEMBER, bad)
    assert session.read_markers == {}

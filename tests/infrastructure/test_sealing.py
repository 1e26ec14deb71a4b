"""Sealing (crypto-shredding, infrastructure/storage/sealing.py), on a real key store and event
store in tmp_path: personal fields round-trip for any text and are stored only sealed; a
destroyed key (erasure) or an expired day (retention) leaves the erased marker while the stored
bytes stay as they were; a reply quoting someone is erased with them, and one quoting many people
is one layer that grows by a fixed amount per key and is erased with any one of them; replies
sealed a layer per key (before 2026-12-06) still read; altered ciphertext reads as unreadable,
never as someone else's text; nothing is sealed for an erased person again."""

from __future__ import annotations

from datetime import date
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.assistant_reply import AssistantReply, AssistantReplyFailure
from domain.message import Message
from domain.provenance import acting_as
from domain.user import ERASED
from infrastructure.storage.event_encoding import MsgspecTranscoder
from infrastructure.storage.event_store import open_event_store
from infrastructure.storage.sealing import PREFIX, SEALED_WITH_ALL, UNREADABLE, SealingMapper, _seal
from tests.backend import settings_for


@pytest.fixture(scope="module")
def mapper(tmp_path_factory) -> SealingMapper:
    app = open_event_store(settings_for(tmp_path_factory.mktemp("data")))
    yield app.mapper
    app.close()


def posted(content: str, author=None, session=None):
    author, session = author or uuid4(), session or uuid4()
    with acting_as(str(author), "test"):
        message = Message.post(session, author, "user", content, None)
    [event] = message.collect_events()
    return event


def stored_content(mapper, stored) -> str:
    return MsgspecTranscoder().decode(stored.state)["content"]


contents = st.text() | st.text().map(lambda s: PREFIX + s) | st.text().map(lambda s: SEALED_WITH_ALL + s) | st.just(ERASED)


@settings(max_examples=200, deadline=None)
@given(contents)
def test_any_content_is_stored_sealed_and_reads_back_exactly(mapper, content):
    event = posted(content)
    stored = mapper.to_stored_event(event)
    sealed = stored_content(mapper, stored)
    assert sealed.startswith(f"{PREFIX}{event.author_id.hex}.{event.session_id.hex}.")
    assert mapper.to_domain_event(stored).content == content


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1))
def test_a_destroyed_key_leaves_only_the_erased_marker_and_the_stored_bytes_unchanged(mapper, content):
    event = posted(content)
    stored = mapper.to_stored_event(event)
    before = bytes(stored.state)
    mapper.keys.destroy(event.author_id.hex)
    assert mapper.to_domain_event(stored).content == ERASED
    assert stored.state == before


def test_an_erased_persons_new_fields_are_not_sealed_but_stored_as_erased(mapper):
    author = uuid4()
    mapper.keys.destroy(author.hex)
    stored = mapper.to_stored_event(posted("after the erasure", author))
    assert stored_content(mapper, stored) == ERASED
    assert mapper.to_domain_event(stored).content == ERASED


def test_an_expired_day_erases_that_sessions_messages_and_keeps_the_others(mapper):
    author, old_session, kept_session = uuid4(), uuid4(), uuid4()
    old, kept = posted("old news", author, old_session), posted("kept news", author, kept_session)
    stored_old, stored_kept = mapper.to_stored_event(old), mapper.to_stored_event(kept)
    day_after = old.timestamp.date().toordinal() + 1
    expired = mapper.keys.expire(date.fromordinal(day_after).isoformat(), [old_session.hex])
    assert expired == {old_session.hex: 1}
    assert mapper.to_domain_event(stored_old).content == ERASED
    assert mapper.to_domain_event(stored_kept).content == "kept news"


def reply_quoting(people, content):
    """A completed reply whose sources quote a message of each of `people` (their content keys)."""
    session = uuid4()
    day = posted("x").timestamp.date().isoformat()
    sources = [{"kind": "message", "author_id": str(person), "session_id": str(session), "content_day": day} for person in people]
    with acting_as("assistant", "test"):
        reply = AssistantReply(
            message_id=uuid4(),
            session_id=session,
            content=content,
            status="completed",
            provider="local",
            model="m",
            prompt_tokens=1,
            completion_tokens=1,
            latency_ms=1,
            sources=sources,
            asker_id=uuid4(),
        )
    [event] = reply.collect_events()
    return event


def test_a_reply_quoting_someone_is_erased_with_them_and_readable_before(mapper):
    quoted = uuid4()
    stored = mapper.to_stored_event(reply_quoting([quoted], "they said so"))
    assert mapper.to_domain_event(stored).content == "they said so"
    mapper.keys.destroy(quoted.hex)
    assert mapper.to_domain_event(stored).content == ERASED


def test_a_failed_replys_partial_text_quoting_someone_is_erased_with_them(mapper):
    """The text streamed before a failure quotes as a completed reply does (version 3 of the
    failed event records its sources; before, it was sealed with the asker's key alone)."""
    asker, quoted, session = uuid4(), uuid4(), uuid4()
    day = posted("x").timestamp.date().isoformat()
    sources = [{"kind": "context", "author_id": str(quoted), "session_id": str(session), "content_day": day}]
    with acting_as("assistant", "test"):
        failure = AssistantReplyFailure(
            message_id=uuid4(),
            session_id=session,
            reason="timeout",
            detail="no complete reply within 60 s",
            partial_content="they said the vault code is",
            sources=sources,
            asker_id=asker,
        )
    [event] = failure.collect_events()
    stored = mapper.to_stored_event(event)
    assert mapper.to_domain_event(stored).partial_content == "they said the vault code is"
    mapper.keys.destroy(quoted.hex)
    assert mapper.to_domain_event(stored).partial_content == ERASED


def test_a_version_2_failed_reply_reads_with_no_sources(mapper):
    with acting_as("assistant", "test"):
        failure = AssistantReplyFailure(
            message_id=uuid4(), session_id=uuid4(), reason="timeout", detail="d", partial_content="p", sources=[], asker_id=uuid4()
        )
    [event] = failure.collect_events()
    stored = mapper.to_stored_event(event)
    state = MsgspecTranscoder().decode(stored.state)
    del state["sources"]
    state["class_version"] = 2
    older = type(stored)(stored.originator_id, stored.originator_version, stored.topic, MsgspecTranscoder().encode(state))
    read = mapper.to_domain_event(older)
    assert read.sources == [] and read.partial_content == "p"


def test_altered_ciphertext_reads_as_unreadable(mapper):
    stored = mapper.to_stored_event(posted("original"))
    sealed = stored_content(mapper, stored)
    flipped = sealed[:-3] + ("A" if sealed[-3] != "A" else "B") + sealed[-2:]
    state = stored.state.replace(sealed.encode(), flipped.encode())
    altered = type(stored)(stored.originator_id, stored.originator_version, stored.topic, state)
    assert mapper.to_domain_event(altered).content == UNREADABLE


def test_a_reply_quoting_many_people_is_one_layer_that_grows_by_a_fixed_amount_per_key(mapper):
    """A layer per key made the value a third larger per key: 16 keys made 1,000 characters
    about 100 times larger. Now each key adds its subject and 60 bytes."""
    content = "the figures they gave, " * 44
    people = [uuid4() for _ in range(16)]
    one = stored_content(mapper, mapper.to_stored_event(reply_quoting(people[:1], content)))
    many_stored = mapper.to_stored_event(reply_quoting(people, content))
    many = stored_content(mapper, many_stored)
    assert one.startswith(SEALED_WITH_ALL) and many.startswith(SEALED_WITH_ALL)
    per_key = len(f",{people[0].hex}.{uuid4().hex}.2026-12-06") + 4 * 60 // 3  # its subject, its share in base64
    assert len(many) - len(one) <= 15 * per_key
    assert mapper.to_domain_event(many_stored).content == content
    tricky = mapper.to_stored_event(reply_quoting(people[:2], f"{SEALED_WITH_ALL}{people[0].hex}:AAAA"))
    assert mapper.to_domain_event(tricky).content == f"{SEALED_WITH_ALL}{people[0].hex}:AAAA", "text that looks sealed"
    mapper.keys.destroy(people[7].hex)  # any one of them
    assert mapper.to_domain_event(many_stored).content == ERASED


def test_a_reply_sealed_a_layer_per_key_before_reads_and_is_erased_with_any_key(mapper):
    """As the mapper stored a quoting reply until 2026-12-06: each quoted key's layer in turn,
    then the asker's."""
    quoted = [uuid4(), uuid4()]
    event = reply_quoting(quoted, "what they both said")
    stored = mapper.to_stored_event(event)
    state = MsgspecTranscoder().decode(stored.state)
    day = event.timestamp.date().isoformat()
    value = "what they both said"
    for person in sorted(quoted, key=lambda p: p.hex):
        subject = f"{person.hex}.{event.session_id.hex}.{day}"
        value = _seal(mapper.keys.cipher(subject, create=True), subject, value)
    asker = f"{event.asker_id.hex}.{event.session_id.hex}.{day}"
    state["content"] = _seal(mapper.keys.cipher(asker, create=True), asker, value)
    older = type(stored)(stored.originator_id, stored.originator_version, stored.topic, MsgspecTranscoder().encode(state))
    assert mapper.to_domain_event(older).content == "what they both said"
    mapper.keys.destroy(quoted[1].hex)
    assert mapper.to_domain_event(older).content == ERASED


def test_an_altered_share_of_a_reply_sealed_with_many_keys_reads_as_unreadable(mapper):
    stored = mapper.to_stored_event(reply_quoting([uuid4(), uuid4()], "quoted words"))
    sealed = stored_content(mapper, stored)
    at = sealed.rindex(":") + 10  # inside the first share
    flipped = sealed[:at] + ("A" if sealed[at] != "A" else "B") + sealed[at + 1 :]
    state = stored.state.replace(sealed.encode(), flipped.encode())
    altered = type(stored)(stored.originator_id, stored.originator_version, stored.topic, state)
    assert mapper.to_domain_event(altered).content == UNREADABLE
    at = len(SEALED_WITH_ALL)
    subject_changed = sealed[:at] + "z" + sealed[at + 1 :]  # the subject list no longer parses
    state = stored.state.replace(sealed.encode(), subject_changed.encode())
    altered = type(stored)(stored.originator_id, stored.originator_version, stored.topic, state)
    assert mapper.to_domain_event(altered).content == UNREADABLE


def test_a_reply_whose_model_saw_a_reply_citing_a_document_is_erased_with_its_owner(mapper):
    """The openai provider records what an earlier reply in its context drew on as `context`
    sources; a cited document's is its owner's key."""
    owner = uuid4()
    event = reply_quoting([], "the spreadsheet says 42")
    event.sources.append({"kind": "context", "owner_id": str(owner)})
    stored = mapper.to_stored_event(event)
    assert mapper.to_domain_event(stored).content == "the spreadsheet says 42"
    mapper.keys.destroy(owner.hex)
    assert mapper.to_domain_event(stored).content == ERASED

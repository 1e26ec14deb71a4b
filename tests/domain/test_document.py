from uuid import uuid4

import pytest

from domain.aggregate import Conflict, Forbidden, InvalidValue, NotFound
from domain.chat_session import ChatSession, SessionNotFound
from domain.conversion import Conversion, ConversionIsFinished, conversion_id_for
from domain.document import Document, DocumentIsDeleted, clean_filename

OWNER, MEMBER, STRANGER = uuid4(), uuid4(), uuid4()
SHA = "ab" * 32


def document() -> Document:
    return Document.upload(OWNER, "report.pdf", "application/pdf", 1234, SHA)


def session() -> ChatSession:
    s = ChatSession.start(OWNER, "Plans")
    s.add_member(OWNER, MEMBER)
    return s


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\ann\\notes.txt", "notes.txt"),
        ("bad\x00na\x1bme\u202e.txt", "bad na me .txt"),
        ("...hidden", "hidden"),
        ("  \t\n ", "document"),
        ("../", "document"),
        ("é" * 200 + ".txt", "é" * 125 + ".txt"),
        ("..\x00..", "document"),
        (". .", "document"),
        (".\t.htaccess", "htaccess"),
        ("x/ . .bashrc", "bashrc"),
    ],
)
def test_filenames_are_cleaned_of_paths_controls_and_excess(given, kept):
    assert clean_filename(given) == kept
    assert len(clean_filename(given).encode()) <= 255


def test_an_upload_records_metadata_only_and_refuses_empty_files_and_bad_digests():
    d = document()
    event = d.collect_events()[0]
    assert type(event) is Document.DocumentUploaded
    assert (event.filename, event.media_type, event.size, event.sha256) == ("report.pdf", "application/pdf", 1234, SHA)
    with pytest.raises(InvalidValue):
        Document.upload(OWNER, "a.txt", "text/plain", 0, SHA)
    with pytest.raises(InvalidValue):
        Document.upload(OWNER, "a.txt", "text/plain", 3, "not-a-digest")


def test_attaching_shares_a_document_with_the_sessions_members_only():
    d, s = document(), session()
    assert not d.can_read(MEMBER, [s])
    d.attach(OWNER, s)
    assert d.can_read(MEMBER, [s]) and not d.can_read(STRANGER, [s])
    with pytest.raises(SessionNotFound):
        d.attach(STRANGER, s)
    with pytest.raises(Forbidden):
        d.attach(MEMBER, s)
    d.detach(OWNER, s)
    assert not d.can_read(MEMBER, [s])
    with pytest.raises(NotFound):
        d.detach(OWNER, s)


def test_the_owner_takes_a_document_back_from_a_session_that_removed_them():
    s = ChatSession.start(MEMBER, "Theirs")
    s.add_member(MEMBER, OWNER)
    d = document()
    d.attach(OWNER, s)
    s.remove_member(MEMBER, OWNER)
    d.detach(OWNER, s)
    assert s.id not in d.sessions


def test_a_deleted_document_is_readable_by_no_one_and_stays_deleted():
    d, s = document(), session()
    d.attach(OWNER, s)
    with pytest.raises(Forbidden):
        d.delete(MEMBER)
    d.delete(OWNER)
    deleted = d.collect_events()[-1]
    assert deleted.sha256 == SHA and deleted.session_ids == [s.id]
    assert not d.can_read(OWNER, [s])
    with pytest.raises(DocumentIsDeleted):
        d.delete(OWNER)


def test_a_conversion_has_one_id_per_document_and_target_and_one_outcome():
    doc_id = uuid4()
    conversion = Conversion.request(doc_id, OWNER, "markdown")
    assert conversion.id == conversion_id_for(doc_id, "markdown") != conversion_id_for(doc_id, "text")
    with pytest.raises(InvalidValue):
        Conversion.request(doc_id, OWNER, "pdf")
    conversion.start()
    conversion.start()  # a restarted worker starting it again records nothing new
    conversion.complete("cd" * 32, 10, 1, 10, 5)
    assert conversion.status == "completed"
    with pytest.raises(ConversionIsFinished):
        conversion.fail("timeout", "late", 1)
    with pytest.raises(Conflict):
        conversion.retry()
    assert [type(e).__name__ for e in conversion.collect_events()] == [
        "ConversionRequested",
        "ConversionStarted",
        "ConversionCompleted",
    ]


def test_a_failed_conversion_can_be_retried_and_reasons_are_a_closed_set():
    conversion = Conversion.request(uuid4(), OWNER, "text")
    with pytest.raises(InvalidValue):
        conversion.fail("it broke", "", 1)
    conversion.fail("timeout", "ran past 1 s", 1000)
    conversion.retry()
    assert conversion.status == "pending" and conversion.attempt == 2

"""The document search projector (`document_passages` FTS5, `document_search_conversions`):
the text of a completed markdown or text conversion is indexed in passages (read from the
output blob), other targets are not, a newer conversion replaces the passages, deletion and
the owner's erasure remove them, a vanished blob indexes nothing; replay and rebuild stability."""

import pytest

from application.documents import DeleteDocument
from projections import document_search, search
from projections.document_search import PASSAGE_CHARS, DocumentSearchProjector, search_session_documents, search_visible_documents
from projections.documents import DocumentsProjector
from projections.members import SessionMembersProjector
from tests.projections.projection_log import (
    Projected,
    assert_rebuild_gives_the_same_rows,
    assert_replay_changes_nothing,
    search_hits,
)


def projector(write_side):
    """The projector under test (the `projected` fixture in conftest.py builds it)."""
    return DocumentSearchProjector(write_side.blobs.read_text)


def found(projected, word):
    rows = projected.rows("SELECT document_id, passage FROM document_passages WHERE document_passages MATCH ?", (word,))
    return [(r["document_id"], r["passage"]) for r in rows]


def test_a_completed_markdown_conversion_is_found_by_passage(log, projected):
    ann = log.user("ann@example.org")
    document = log.upload(ann, b"source")
    long_paragraph = " ".join(["filler"] * (PASSAGE_CHARS // 7 + 10))
    log.complete_conversion(log.request_conversion(document, ann), f"{long_paragraph}\n\nthe giraffe paragraph")
    projected.catch_up()
    assert found(projected, "giraffe") == [(str(document), 2)]


def test_an_html_conversion_is_not_indexed(log, projected):
    ann = log.user("ann@example.org")
    document = log.upload(ann, b"source")
    log.complete_conversion(log.request_conversion(document, ann, "html"), "<p>giraffe</p>")
    projected.catch_up()
    assert found(projected, "giraffe") == []


def test_the_latest_completed_conversion_replaces_the_documents_passages(log, projected):
    ann = log.user("ann@example.org")
    document = log.upload(ann, b"source")
    log.complete_conversion(log.request_conversion(document, ann, "markdown"), "giraffe")
    log.complete_conversion(log.request_conversion(document, ann, "text"), "zebra")
    projected.catch_up()
    assert (found(projected, "giraffe"), found(projected, "zebra")) == ([], [(str(document), 1)])


def test_a_deleted_document_is_no_longer_found_and_the_others_are(log, projected):
    ann = log.user("ann@example.org")
    document, kept = log.upload(ann, b"source"), log.upload(ann, b"other source")
    for each in (document, kept):
        log.complete_conversion(log.request_conversion(each, ann), "giraffe")
    log.run(DeleteDocument(document, ann), ann)
    projected.catch_up()
    assert found(projected, "giraffe") == [(str(kept), 1)]
    assert [r["document_id"] for r in projected.rows("SELECT * FROM document_search_conversions")] == [str(kept)]


def test_an_erased_owners_documents_are_no_longer_found(log, projected):
    ann, bob = log.user("ann@example.org"), log.user("bob@example.org")
    for owner, word in ((ann, "giraffe"), (bob, "giraffe zebra")):
        log.complete_conversion(log.request_conversion(log.upload(owner, word.encode()), owner), word)
    log.erase(bob)
    projected.catch_up()
    assert len(found(projected, "giraffe")) == 1 and found(projected, "zebra") == []


@pytest.mark.parametrize("named", [True, False], ids=["documents-named-in-the-index-query", "words-alone-when-they-match-few"])
def test_search_finds_the_passages_of_documents_the_searcher_may_read(write_side, log, tmp_path, monkeypatch, named):
    """Owned documents, and documents attached to the searcher's sessions; a session's search
    (the assistant's) only its own attachments."""
    # which of the two equivalent index queries runs depends on how many rows the words match
    monkeypatch.setattr(search, "NAMED_ID_COST", 0 if named else 10**9)
    ann, bob = log.user("ann@example.org"), log.user("bob@example.org")
    shared = log.session(ann, "Shared", assistant=False)
    log.add(shared, ann, bob)
    attached, private, bobs = log.upload(ann, b"a", session=shared), log.upload(ann, b"p"), log.upload(bob, b"b")
    for document, owner in ((attached, ann), (private, ann), (bobs, bob)):
        log.complete_conversion(log.request_conversion(document, owner), "the giraffe budget")
    path = tmp_path / "read.sqlite3"
    projectors = (projector(write_side), DocumentsProjector(), SessionMembersProjector())
    projected = [Projected(write_side, p, path).catch_up() for p in projectors]

    def visible_to(user, word="giraffe"):
        return search_hits(path, search_visible_documents, "document_id", user, word)

    def in_session(session, word="giraffe"):
        return search_hits(path, search_session_documents, "document_id", session, word)

    assert visible_to(ann) == {str(attached), str(private)}
    assert visible_to(bob) == {str(attached), str(bobs)}
    assert visible_to(log.user("eve@example.org")) == set()
    assert in_session(shared) == {str(attached)}
    assert in_session(log.session(bob, "Empty", assistant=False)) == set()
    # the index holds document ids too, but words match only the text
    for part in [*str(attached).split("-"), str(attached).replace("-", "")]:
        assert visible_to(ann, part) == in_session(shared, part) == set()
    for each in projected:
        each.close()


def test_only_the_first_indexed_characters_of_an_output_are_read_and_indexed(write_side, log, tmp_path, monkeypatch):
    monkeypatch.setattr(document_search, "INDEXED_CHARS", 2_000)
    ann = log.user("ann@example.org")
    document = log.upload(ann, b"source")
    log.complete_conversion(log.request_conversion(document, ann), "kept " * 400 + "\n\nbeyond " * 300)
    asked: list[int] = []

    def read_text(sha256, max_chars):
        asked.append(max_chars)
        return write_side.blobs.read_text(sha256, max_chars)

    projected = Projected(write_side, DocumentSearchProjector(read_text), tmp_path / "read.sqlite3").catch_up()
    assert asked == [2_000] and found(projected, "kept") and found(projected, "beyond") == []
    projected.close()


def test_an_output_blob_that_is_gone_indexes_nothing(write_side, log, projected):
    ann = log.user("ann@example.org")
    document = log.upload(ann, b"source")
    output = log.complete_conversion(log.request_conversion(document, ann), "giraffe")
    write_side.blobs.remove(output)
    projected.catch_up()
    assert found(projected, "giraffe") == []


def scenario(log):
    ann = log.user("ann@example.org")
    for n in range(4):
        document = log.upload(ann, f"source {n}".encode())
        log.complete_conversion(log.request_conversion(document, ann), f"passage about animal{n}\n\nand more")
        if n == 2:
            log.run(DeleteDocument(document, ann), ann)


def test_replaying_the_log_changes_no_row(write_side, log, projected, tmp_path):
    scenario(log)
    projected.catch_up()
    assert_replay_changes_nothing(write_side, projected, tmp_path)


def test_a_rebuild_from_the_log_gives_the_same_rows(write_side, log, projected, tmp_path):
    scenario(log)
    projected.catch_up()
    assert_rebuild_gives_the_same_rows(write_side, projected, tmp_path)

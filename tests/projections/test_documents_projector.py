"""The documents projector (`documents`, `document_sessions`, `conversions`, `blob_references`):
uploads, attaching and detaching, conversions through their statuses, deletion and erasure
removing every reference to the bytes; replay and rebuild stability."""

from application.documents import AttachDocument, DeleteDocument, DetachDocument, RetryConversion
from projections.documents import DocumentsProjector, failed_conversions, referenced
from tests.projections.projection_log import (
    assert_rebuild_gives_the_same_rows,
    assert_replay_changes_nothing,
)


def projector(write_side):
    """The projector under test (the `projected` fixture in conftest.py builds it)."""
    return DocumentsProjector()


def referenced_blobs(projected):
    return {r["sha256"] for r in projected.rows("SELECT sha256 FROM blob_references")}


def test_an_upload_is_a_document_row_and_a_reference_to_its_blob(log, projected):
    ann = log.user("ann@example.org")
    document = log.upload(ann, b"hello", "../notes.txt")
    projected.catch_up()
    [row] = projected.rows("SELECT * FROM documents")
    assert (row["id"], row["owner_id"], row["size"], row["media_type"]) == (str(document), str(ann), 5, "text/plain")
    assert "/" not in row["filename"]
    assert referenced_blobs(projected) == {row["sha256"]}


def test_attach_and_detach_follow_the_sessions_of_a_document(log, projected):
    ann = log.user("ann@example.org")
    one, two = log.session(ann, "One"), log.session(ann, "Two")
    document = log.upload(ann, b"shared", session=one)
    log.run(AttachDocument(document, two, ann), ann)
    projected.catch_up()
    sessions = {r["session_id"] for r in projected.rows("SELECT session_id FROM document_sessions")}
    assert sessions == {str(one), str(two)}
    log.run(DetachDocument(document, one, ann), ann)
    projected.catch_up()
    assert [r["session_id"] for r in projected.rows("SELECT session_id FROM document_sessions")] == [str(two)]


def test_a_conversion_goes_pending_running_completed_and_its_output_is_referenced(log, projected):
    ann = log.user("ann@example.org")
    document = log.upload(ann, b"hello")
    conversion = log.request_conversion(document, ann)
    projected.catch_up()
    assert projected.rows("SELECT status, attempt FROM conversions") == [{"status": "pending", "attempt": 1}]
    output = log.complete_conversion(conversion, "# hello")
    projected.catch_up()
    [row] = projected.rows("SELECT status, output_sha256, started_at, completed_at FROM conversions")
    assert (row["status"], row["output_sha256"]) == ("completed", output) and row["started_at"] and row["completed_at"]
    with projected.store.transaction() as tx:
        assert referenced(tx, output)


def test_a_failed_conversion_is_listed_and_a_retry_makes_it_pending_again(log, projected):
    ann = log.user("ann@example.org")
    conversion = log.request_conversion(log.upload(ann, b"hello"), ann)
    log.fail_conversion(conversion)
    projected.catch_up()
    with projected.store.transaction() as tx:
        assert failed_conversions(tx) == [str(conversion)]
    log.run(RetryConversion(conversion), ann)
    projected.catch_up()
    row = projected.rows("SELECT status, reason, attempt FROM conversions")[0]
    assert (row["status"], row["reason"], row["attempt"]) == ("pending", None, 2)


def test_a_deleted_document_leaves_no_row_and_no_reference_to_its_bytes_or_outputs(log, projected):
    ann = log.user("ann@example.org")
    session = log.session(ann)
    kept = log.upload(ann, b"kept")
    document = log.upload(ann, b"gone", session=session)
    log.complete_conversion(log.request_conversion(document, ann), "gone, converted")
    log.run(DeleteDocument(document, ann), ann)
    projected.catch_up()
    assert [r["id"] for r in projected.rows("SELECT id FROM documents")] == [str(kept)]
    for table in ("document_sessions", "conversions"):
        assert projected.rows(f"SELECT * FROM {table}") == []
    assert len(referenced_blobs(projected)) == 1


def test_an_erased_owners_documents_and_references_go_at_once(log, projected):
    ann, bob = log.user("ann@example.org"), log.user("bob@example.org")
    log.upload(ann, b"ann's")
    bobs = log.upload(bob, b"bob's")
    log.complete_conversion(log.request_conversion(bobs, bob), "bob's text")
    projected.catch_up()
    log.erase(bob)
    projected.catch_up()
    assert [r["owner_id"] for r in projected.rows("SELECT owner_id FROM documents")] == [str(ann)]
    assert projected.rows("SELECT * FROM conversions") == [] and len(referenced_blobs(projected)) == 1


def test_a_conversion_requested_for_an_unknown_document_is_not_a_row(log, projected):
    """Replayed after the document's deletion was applied (a rebuild), the request finds no row."""
    ann = log.user("ann@example.org")
    document = log.upload(ann, b"soon gone")
    log.request_conversion(document, ann)
    log.run(DeleteDocument(document, ann), ann)
    projected.rebuild()
    assert projected.rows("SELECT * FROM conversions") == []


def scenario(log):
    ann, bob = log.user("ann@example.org"), log.user("bob@example.org")
    session = log.session(ann)
    for n in range(4):
        document = log.upload(ann if n % 2 else bob, f"file {n}".encode(), f"f{n}.txt", session=session if n % 2 else None)
        conversion = log.request_conversion(document, ann if n % 2 else bob)
        if n % 2:
            log.complete_conversion(conversion, f"text {n}")
        else:
            log.fail_conversion(conversion)
    log.erase(bob)


def test_replaying_the_log_changes_no_row(write_side, log, projected, tmp_path):
    scenario(log)
    projected.catch_up()
    assert_replay_changes_nothing(write_side, projected, tmp_path)


def test_a_rebuild_from_the_log_gives_the_same_rows(write_side, log, projected, tmp_path):
    scenario(log)
    projected.catch_up()
    assert_rebuild_gives_the_same_rows(write_side, projected, tmp_path)

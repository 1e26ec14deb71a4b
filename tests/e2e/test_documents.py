"""Documents through a real server: uploads into content-addressed files, downloads with ranges,
conversions by the event-driven worker, sharing through sessions, and search."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from tests import document_files as files
from tests.e2e.conftest import assert_problem
from tests.e2e.server import Api, Server

pytestmark = pytest.mark.e2e
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def upload(client: Api, filename: str, data: bytes, session_id: str | None = None, content_type: str = "application/pdf"):
    form = {"session_id": session_id} if session_id else None
    return client.post("/api/documents", files={"file": (filename, data, content_type)}, data=form)


def uploaded(client: Api, filename: str, data: bytes, **kwargs) -> dict:
    """Uploads and waits until the read model shows it (read-your-writes), as a client would."""
    response = upload(client, filename, data, **kwargs)
    assert response.status_code == 201, response.text
    document = response.json()
    assert client.get(f"/api/documents/{document['id']}", params={"after_position": document["position"]}).status_code == 200
    return document


def convert(client: Api, document_id: str, target: str, timeout: float = 60) -> dict:
    """Requests the conversion and waits until it has finished."""
    requested = client.post(f"/api/documents/{document_id}/conversions", {"target": target})
    assert requested.status_code == 202, requested.text
    return finished(client, document_id, requested.json()["id"], timeout)


def finished(client: Api, document_id: str, conversion_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        view = client.get(f"/api/documents/{document_id}/conversions/{conversion_id}", params={"after_position": client.head()})
        assert view.status_code == 200, view.text
        if view.json()["status"] in ("completed", "failed") or time.monotonic() > deadline:
            return view.json()
        time.sleep(0.1)


def converted_text(client: Api, conversion: dict) -> str:
    assert conversion["status"] == "completed", conversion
    response = client.get(f"/api/documents/{conversion['document_id']}/conversions/{conversion['id']}/content")
    assert response.status_code == 200
    return response.text


def blob(server: Server, sha256: str) -> Path:
    return server.data_dir / "blobs" / sha256[:2] / sha256[2:4] / sha256


def leftovers(server: Server) -> list[Path]:
    return list((server.data_dir / "blobs" / "incoming").iterdir())


def test_an_upload_is_stored_by_content_and_downloaded_with_ranges(server, new_user):
    ann, _ = new_user("ann")
    data = files.pdf(["The walrus colony grew by a third this season."])
    document = uploaded(ann, "report.pdf", data, content_type="application/octet-stream")
    sha = hashlib.sha256(data).hexdigest()
    assert document["sha256"] == sha and document["size"] == len(data)
    assert document["media_type"] == "application/pdf" and document["filename"] == "report.pdf"
    assert blob(server, sha).read_bytes() == data

    whole = ann.get(f"/api/documents/{document['id']}/content")
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-type"] == "application/pdf"
    assert whole.headers["etag"] == f'"{sha}"'
    assert whole.headers["content-disposition"].startswith('attachment; filename="report.pdf"')
    part = ann.get(f"/api/documents/{document['id']}/content", headers={"range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == data[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
    tail = ann.get(f"/api/documents/{document['id']}/content", headers={"range": "bytes=-5"})
    assert tail.status_code == 206 and tail.content == data[-5:]
    assert_problem(ann.get(f"/api/documents/{document['id']}/content", headers={"range": f"bytes={len(data)}-"}), 416)
    huge = "9" * 5000  # more digits than Python's int() takes from text
    assert_problem(ann.get(f"/api/documents/{document['id']}/content", headers={"range": f"bytes={huge}-"}), 416)
    assert_problem(ann.get(f"/api/documents/{document['id']}/content", headers={"range": f"bytes={huge}-{huge}"}), 416)
    everything = ann.get(f"/api/documents/{document['id']}/content", headers={"range": f"bytes=-{huge}"})
    assert everything.status_code == 206 and everything.content == data
    beyond_the_end = ann.get(f"/api/documents/{document['id']}/content", headers={"range": f"bytes=3-{huge}"})
    assert beyond_the_end.status_code == 206 and beyond_the_end.content == data[3:]
    zeros = "0" * 30  # leading zeros do not make a number larger
    padded = ann.get(f"/api/documents/{document['id']}/content", headers={"range": f"bytes={zeros}5-{zeros}9"})
    assert padded.status_code == 206 and padded.content == data[5:10]
    assert_problem(ann.get(f"/api/documents/{document['id']}/content", headers={"range": f"bytes=-{zeros}"}), 416)
    cached = ann.get(f"/api/documents/{document['id']}/content", headers={"if-none-match": f'"{sha}"'})
    assert cached.status_code == 304 and cached.content == b""

    one = ann.get(f"/api/documents/{document['id']}", params={"after_position": document["position"]})
    assert one.json() == document
    mine = ann.get("/api/documents", params={"after_position": document["position"]}).json()
    assert [d["id"] for d in mine["items"]] == [document["id"]]


def test_a_sessions_documents_come_in_pages_in_the_order_they_were_attached(server, new_user):
    ann, _ = new_user("ann")
    sid = ann.post("/api/sessions", {"title": "Library", "assistant": False}).json()["id"]
    documents = [uploaded(ann, f"note {n}.txt", f"note {n}".encode(), content_type="text/plain") for n in range(5)]
    for document in reversed(documents):  # attached newest first
        at = ann.post(f"/api/sessions/{sid}/documents", {"document_id": document["id"]}).json()["position"]
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, "after_position": at} | ({"cursor": cursor} if cursor else {})
        page = ann.get(f"/api/sessions/{sid}/documents", params=params).json()
        seen += [d["filename"] for d in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"note {n}.txt" for n in reversed(range(5))] and pages == 3
    assert_problem(ann.get(f"/api/sessions/{sid}/documents", params={"cursor": "x1"}), 400)
    assert_problem(ann.get(f"/api/sessions/{sid}/documents", params={"limit": 0}), 400)
    assert_problem(ann.get(f"/api/sessions/{sid}/documents", params={"limit": 501}), 400)


def test_documents_are_private_until_attached_to_a_session(server, new_user):
    ann, _ = new_user("ann")
    bob, bob_user = new_user("bob")
    eve, _ = new_user("eve")
    document = uploaded(ann, "plan.md", files.MARKDOWN, content_type="text/markdown")
    for path in ("", "/content", "/conversions"):
        assert_problem(bob.get(f"/api/documents/{document['id']}{path}", params={"after_position": document["position"]}), 404)
    assert_problem(bob.post(f"/api/documents/{document['id']}/conversions", {"target": "text"}), 404)
    assert_problem(bob.delete(f"/api/documents/{document['id']}"), 404)
    assert bob.get("/api/documents", params={"after_position": document["position"]}).json()["items"] == []

    sid = ann.post("/api/sessions", {"title": "Trip", "assistant": False}).json()["id"]
    ann.post(f"/api/sessions/{sid}/members", {"user_id": bob_user["id"]})
    assert_problem(bob.post(f"/api/sessions/{sid}/documents", {"document_id": document["id"]}), 404)
    attached = ann.post(f"/api/sessions/{sid}/documents", {"document_id": document["id"]})
    assert attached.status_code == 201, attached.text
    at = attached.json()["position"]
    shared = bob.get(f"/api/sessions/{sid}/documents", params={"after_position": at}).json()
    assert [d["id"] for d in shared["items"]] == [document["id"]] and shared["next_cursor"] is None
    assert bob.get(f"/api/documents/{document['id']}/content").content == files.MARKDOWN
    assert_problem(eve.get(f"/api/sessions/{sid}/documents", params={"after_position": at}), 404)
    assert_problem(eve.get(f"/api/documents/{document['id']}", params={"after_position": at}), 404)
    assert_problem(bob.delete(f"/api/documents/{document['id']}"), 403)

    detached = bob.delete(f"/api/sessions/{sid}/documents/{document['id']}")
    assert_problem(detached, 403)
    assert_problem(eve.delete(f"/api/sessions/{sid}/documents/{document['id']}"), 404)
    detached = ann.delete(f"/api/sessions/{sid}/documents/{document['id']}")
    assert detached.status_code == 200
    assert_problem(bob.get(f"/api/documents/{document['id']}", params={"after_position": detached.json()["position"]}), 404)


@pytest.mark.parametrize(
    ("filename", "make", "media_type", "expected"),
    [
        (
            "report.pdf",
            lambda: files.pdf(["The walrus colony grew by a third.", "Second page about sea ice."]),
            "application/pdf",
            ["Walrus migration report", "walrus colony grew", "sea ice"],
        ),
        (
            "budget.docx",
            lambda: files.docx("Quarterly budget", "Spending on lanterns rose.", [["item", "cost"], ["lantern", "42"]]),
            DOCX,
            ["# Quarterly budget", "Spending on lanterns rose.", "| item | cost |", "| lantern | 42 |"],
        ),
        (
            "deck.pptx",
            lambda: files.pptx("Harbour expansion", "Dredging starts in May"),
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            ["# Harbour expansion", "Dredging starts in May"],
        ),
        (
            "stock.xlsx",
            lambda: files.xlsx([["fruit", "crates"], ["cloudberry", 12]]),
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            ["## Inventory", "| fruit | crates |", "| cloudberry | 12 |"],
        ),
        ("minutes.html", lambda: files.HTML_WITH_SCRIPT, "text/html", ["# Board minutes", "lighthouse budget"]),
        ("list.md", lambda: files.MARKDOWN, "text/markdown", ["# Packing list", "- tent", "**compass**"]),
        ("note.txt", lambda: files.TEXT, "text/plain", ["forty barrels of salted herring"]),
        ("cities.csv", lambda: files.CSV, "text/csv", ["| city | population |", "| Reykjavik | 139875 |"]),
        ("trip.json", lambda: files.JSON, "application/json", ['"expedition": "Svalbard"']),
    ],
)
def test_each_source_type_converts_to_markdown_with_its_words_and_structure(server, new_user, filename, make, media_type, expected):
    ann, _ = new_user("ann")
    document = uploaded(ann, filename, make())
    assert document["media_type"] == media_type
    conversion = convert(ann, document["id"], "markdown")
    assert conversion["status"] == "completed", conversion
    markdown = converted_text(ann, conversion)
    for piece in expected:
        assert piece in markdown, (piece, markdown)
    assert conversion["characters"] == len(markdown) and conversion["completed_at"]


def test_text_and_html_targets_and_a_repeated_request(server, new_user):
    ann, _ = new_user("ann")
    document = uploaded(
        ann, "budget.docx", files.docx("Quarterly budget", "Spending on lanterns rose.", [["item", "cost"], ["lantern", "42"]])
    )
    text = converted_text(ann, convert(ann, document["id"], "text"))
    assert "Quarterly budget" in text and "lantern\t42" in text and "#" not in text and "|" not in text
    html = convert(ann, document["id"], "html")
    response = ann.get(f"/api/documents/{document['id']}/conversions/{html['id']}/content")
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "sandbox" in response.headers["content-security-policy"]
    assert "<h1>Quarterly budget</h1>" in response.text and "<td>lantern</td>" in response.text

    again = ann.post(f"/api/documents/{document['id']}/conversions", {"target": "html"})
    assert again.status_code == 202 and again.json()["id"] == html["id"] and again.json()["status"] == "completed"
    listed = ann.get(f"/api/documents/{document['id']}/conversions", params={"after_position": ann.head()}).json()
    assert sorted(c["target"] for c in listed) == ["html", "text"]
    assert_problem(ann.post(f"/api/documents/{document['id']}/conversions", {"target": "pdf"}), 400, "target")


def test_html_with_scripts_and_event_handlers_is_served_sanitized(server, new_user):
    ann, _ = new_user("ann")
    document = uploaded(ann, "minutes.html", files.HTML_WITH_SCRIPT)
    html = converted_text(ann, convert(ann, document["id"], "html"))
    assert "lighthouse budget" in html
    for dangerous in ("<script", "alert(", "onclick", "onerror", "javascript:"):
        assert dangerous not in html.lower(), html
    original = ann.get(f"/api/documents/{document['id']}/content")
    assert original.headers["content-disposition"].startswith("attachment")


def test_unconvertible_files_fail_with_the_right_reason(server, new_user):
    ann, _ = new_user("ann")
    png = uploaded(ann, "scan.pdf", files.png())
    assert png["media_type"] == "image/png" and png["filename"] == "scan.pdf"
    failed = convert(ann, png["id"], "markdown")
    assert failed["status"] == "failed" and failed["reason"] == "unsupported_type"

    whole = files.pdf(["A page that will be cut in half."] * 3)
    truncated = uploaded(ann, "cut.pdf", whole[: len(whole) // 2])
    assert convert(ann, truncated["id"], "text")["reason"] == "corrupt_file"

    locked = uploaded(ann, "locked.pdf", files.pdf(["Secret plans for the lighthouse."], password="hunter2"))
    assert locked["media_type"] == "application/pdf"
    assert convert(ann, locked["id"], "text")["reason"] == "encrypted"
    assert_problem(ann.get(f"/api/documents/{locked['id']}/conversions/{failed['id']}/content"), 404)
    response = ann.get(f"/api/documents/{png['id']}/conversions/{failed['id']}/content")
    assert_problem(response, 409)
    assert server.client().get("/health").json()["status"] == "ok"


def test_bad_uploads_are_refused_and_leave_nothing_behind(server, new_user):
    ann, _ = new_user("ann")
    head = ann.head()
    assert_problem(upload(ann, "empty.txt", b""), 400)
    assert_problem(ann.post("/api/documents", {"file": "not multipart"}), 415)
    assert_problem(ann.post("/api/documents", data={"note": "no file"}, files={"other": ("a.txt", b"x")}), 400)
    assert_problem(upload(ann, "a.txt", b"hello", session_id="not-a-uuid"), 400)
    missing_session = upload(ann, "a.txt", b"hello there", session_id="00000000-0000-4000-8000-000000000000")
    assert_problem(missing_session, 404)
    assert not blob(server, hashlib.sha256(b"hello there").hexdigest()).exists()
    assert_problem(server.client().post("/api/documents", files={"file": ("a.txt", b"x")}), 401)
    assert ann.head() == head
    assert leftovers(server) == []


def test_a_hostile_filename_is_sanitized(server, new_user):
    ann, _ = new_user("ann")
    raw_name = "../../etc/pass\x1bwd\x07\u202e.txt".encode()
    body = b'--b\r\nContent-Disposition: form-data; name="file"; filename="' + raw_name + b'"\r\n\r\n' + files.TEXT + b"\r\n--b--\r\n"
    response = ann.post("/api/documents", content=body, headers={"content-type": "multipart/form-data; boundary=b"})
    assert response.status_code == 201, response.text
    document = response.json()
    assert document["filename"] == "pass wd .txt"
    download = ann.get(f"/api/documents/{document['id']}/content", params={"after_position": document["position"]})
    assert "/" not in download.headers["content-disposition"].split("filename*=")[0]
    assert not (server.data_dir.parent / "etc").exists()


def test_identical_bytes_are_stored_once_and_deleted_only_when_unreferenced(server, new_user):
    ann, _ = new_user("ann")
    bob, _ = new_user("bob")
    data = files.pdf(["Shared bytes about the tide tables."])
    first = uploaded(ann, "tides.pdf", data)
    second = uploaded(bob, "my-tides.pdf", data)
    assert first["sha256"] == second["sha256"] and first["id"] != second["id"]
    path = blob(server, first["sha256"])
    assert path.read_bytes() == data
    assert [d["id"] for d in ann.get("/api/documents", params={"after_position": second["position"]}).json()["items"]] == [first["id"]]
    assert [d["id"] for d in bob.get("/api/documents", params={"after_position": second["position"]}).json()["items"]] == [second["id"]]
    conversion = convert(ann, first["id"], "text")
    output = blob(server, server_output_sha(server, conversion))

    deleted = ann.delete(f"/api/documents/{first['id']}")
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert_problem(ann.get(f"/api/documents/{first['id']}", params={"after_position": deleted.json()["position"]}), 404)
    assert_problem(ann.delete(f"/api/documents/{first['id']}"), 404)
    wait_until(lambda: not output.exists())
    assert path.exists() and bob.get(f"/api/documents/{second['id']}/content").content == data

    bob.delete(f"/api/documents/{second['id']}")
    wait_until(lambda: not path.exists())


def server_output_sha(server: Server, conversion: dict) -> str:
    import sqlite3

    db = sqlite3.connect(server.data_dir / "read.sqlite3")
    try:
        return db.execute("SELECT output_sha256 FROM conversions WHERE id=?", (conversion["id"],)).fetchone()[0]
    finally:
        db.close()


def wait_until(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_search_finds_messages_and_document_passages_the_user_may_read(server, new_user):
    ann, _ = new_user("ann")
    bob, _ = new_user("bob")
    sid = ann.post("/api/sessions", {"title": "Expedition", "assistant": False}).json()["id"]
    posted = ann.post(f"/api/sessions/{sid}/messages", {"content": "The narwhal sighting was near the fjord."}).json()
    document = uploaded(ann, "log.pdf", files.pdf(["Day 3: a narwhal surfaced beside the kayak.", "Day 4: fog."]))
    convert(ann, document["id"], "text")

    found = ann.get("/api/search", params={"q": "narwhal", "after_position": ann.head()}).json()
    kinds = {hit["kind"]: hit for hit in found["hits"]}
    assert set(kinds) == {"message", "document"}
    assert kinds["message"]["message_id"] == posted["id"] and "[narwhal]" in kinds["message"]["snippet"]
    assert ann.get(kinds["message"]["link"]).json()["content"] == posted["content"]
    assert kinds["document"]["document_id"] == document["id"] and kinds["document"]["passage"] == 1
    assert "[narwhal]" in kinds["document"]["snippet"]
    only = ann.get("/api/search", params={"q": "narwhal kayak", "kind": "documents"}).json()["hits"]
    assert [h["kind"] for h in only] == ["document"]
    assert bob.get("/api/search", params={"q": "narwhal", "after_position": ann.head()}).json()["hits"] == []
    assert_problem(ann.get("/api/search", params={"q": ""}), 400)


def test_the_local_assistant_quotes_a_document_attached_to_the_session(server, new_user):
    ann, _ = new_user("ann")
    sid = ann.post("/api/sessions", {"title": "Ops"}).json()["id"]
    document = uploaded(
        ann,
        "runbook.docx",
        files.docx(
            "Failover runbook",
            "Promote the standby replica in Frankfurt before rotating the certificates.",
            [["step", "owner"], ["promote", "ops"]],
        ),
        session_id=sid,
    )
    convert(ann, document["id"], "markdown")
    question = ann.post(f"/api/sessions/{sid}/messages", {"content": "Which replica should we promote?"}).json()
    deadline = time.monotonic() + 20
    while True:
        items = ann.get(f"/api/sessions/{sid}/messages", params={"after_position": ann.head()}).json()["items"]
        reply = next((m for m in items if m["reply_to"] == question["id"]), None)
        if reply or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert reply is not None and "standby [replica] in Frankfurt" in reply["content"].replace("[promote]", "promote")
    assert f"document {document['id']}" in reply["content"]


def test_conversion_progress_reaches_the_owners_stream(server, new_user):
    import json

    from websockets.sync.client import connect

    ann, _ = new_user("ann")
    document = uploaded(ann, "note.txt", files.TEXT)
    ws_url = server.url.replace("http", "ws") + f"/api/stream?token={ann.token}&after={document['position'] - 1}"
    with connect(ws_url) as socket:
        conversion = convert(ann, document["id"], "markdown")
        types = []
        deadline = time.monotonic() + 10
        while "conversion.completed" not in types and time.monotonic() < deadline:
            frame = json.loads(socket.recv(timeout=10))
            types.append(frame["type"])
            if frame["type"] == "conversion.completed":
                assert frame["data"]["id"] == conversion["id"] and frame["session_id"] is None
    assert types == ["document.uploaded", "conversion.pending", "conversion.running", "conversion.completed"]


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory):
    running = Server(
        tmp_path_factory.mktemp("strict"),
        env={
            "CHRONICLE_UPLOAD_MAX_MB": "1",
            "CHRONICLE_CONVERSION_TIMEOUT": "1",
            "CHRONICLE_CONVERSION_MAX_UNPACKED_MB": "16",
        },
    ).start()
    yield running
    running.stop()


def test_an_upload_over_the_limit_is_refused_while_streaming(strict_server):
    ann, _ = strict_server.client().signup("big@example.org")
    head = ann.head()

    def body():
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n'
        for _ in range(64):  # 4 MiB, without a Content-Length
            yield bytes(64 * 1024)
        yield b"\r\n--b--\r\n"

    response = ann.post("/api/documents", content=body(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert_problem(response, 413)

    def endless_preamble():
        for _ in range(64):  # 4 MiB before the first boundary, which a parser skips
            yield b"x" * (64 * 1024)
        yield b'\r\n--b\r\nContent-Disposition: form-data; name="file"; filename="small.bin"\r\n\r\nsmall\r\n--b--\r\n'

    preamble = ann.post("/api/documents", content=endless_preamble(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert_problem(preamble, 413)
    announced = upload(ann, "big.bin", bytes(2 * 1024 * 1024))
    assert_problem(announced, 413)
    assert ann.head() == head and leftovers(strict_server) == []
    assert list((strict_server.data_dir / "blobs").glob("??/??/*")) == []
    assert uploaded(ann, "small.txt", files.TEXT)["size"] == len(files.TEXT)


def test_a_zip_bomb_and_a_slow_conversion_fail_without_harming_the_server(strict_server):
    ann, _ = strict_server.client().signup("bomb@example.org")
    bomb = uploaded(ann, "bomb.docx", files.docx_bomb(64 * 1024 * 1024))
    assert bomb["size"] < 1024 * 1024
    failed = convert(ann, bomb["id"], "markdown")
    assert failed["status"] == "failed" and failed["reason"] == "too_large", failed

    rows = [[f"row {n}", n, n * 2.5, "cloudberry jam"] for n in range(20_000)]
    slow = uploaded(ann, "huge.csv", "\n".join(",".join(map(str, r)) for r in rows).encode()[: 1024 * 1024 - 100])
    started = time.monotonic()
    timed_out = convert(ann, slow["id"], "html")
    assert timed_out["status"] == "failed" and timed_out["reason"] == "timeout", timed_out
    assert time.monotonic() - started < 10
    assert ann.get("/health").json()["status"] == "ok"
    assert uploaded(ann, "after.txt", b"still taking uploads")["size"] == 20


def test_the_owner_takes_a_document_back_from_a_session_they_were_removed_from(server, new_user):
    ann, ann_user = new_user("ann")
    bob, _ = new_user("bob")
    sid = bob.post("/api/sessions", {"title": "Bob's", "assistant": False}).json()["id"]
    bob.post(f"/api/sessions/{sid}/members", {"user_id": ann_user["id"]})
    document = uploaded(ann, "mine.txt", files.TEXT, session_id=sid)
    removed = bob.delete(f"/api/sessions/{sid}/members/{ann_user['id']}")
    assert bob.get(f"/api/documents/{document['id']}", params={"after_position": removed.json()["position"]}).status_code == 200
    taken = ann.delete(f"/api/sessions/{sid}/documents/{document['id']}")
    assert taken.status_code == 200, taken.text
    assert_problem(bob.get(f"/api/documents/{document['id']}", params={"after_position": taken.json()["position"]}), 404)

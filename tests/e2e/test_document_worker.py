"""The conversion worker across restarts and the `chronicle documents` maintenance commands."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from pathlib import Path

import pytest

from tests import document_files as files
from tests.backend import stored_events
from tests.e2e.server import Server, cli
from tests.e2e.test_documents import blob, finished, uploaded

pytestmark = pytest.mark.e2e


def big_csv(rows: int) -> bytes:
    return "\n".join(f"row {n},{n},{n * 2.5},cloudberry jam" for n in range(rows)).encode()


def outcomes(data_dir) -> Counter:
    """Conversion outcome events in the log, by kind."""
    rows = [row for row in stored_events(data_dir) if "Conversion.Conversion" in row.topic]
    return Counter(row.topic.rsplit(".", 1)[1] for row in rows)


def test_a_conversion_interrupted_by_kill_9_is_done_once_after_the_restart(tmp_path):
    server = Server(tmp_path).start()
    try:
        ann, document, conversion = start_converting(server, 80_000)
        server.kill()
        assert outcomes(tmp_path) == Counter({"ConversionRequested": 1, "ConversionStarted": 1})

        server.start()
        done = finished(ann, document["id"], conversion["id"], timeout=60)
        assert done["status"] == "completed", done
        server.stop()
        server.start()
        time.sleep(1)  # a worker that wrongly redid it would have started by now
        assert outcomes(tmp_path) == Counter({"ConversionRequested": 1, "ConversionStarted": 1, "ConversionCompleted": 1})
    finally:
        server.stop()


def test_failed_conversions_are_requested_again_from_the_command_line(tmp_path):
    server = Server(tmp_path, env={"CHRONICLE_CONVERSION_TIMEOUT": "0.5"}).start()
    try:
        ann, _ = server.client().signup("ann@example.org")
        document = uploaded(ann, "ledger.csv", big_csv(40_000))
        conversion = ann.post(f"/api/documents/{document['id']}/conversions", {"target": "html"}).json()
        assert finished(ann, document["id"], conversion["id"])["reason"] == "timeout"
    finally:
        server.stop()

    done = cli(tmp_path, "documents", "reconvert", "--failed")
    assert done.returncode == 0 and "requested 1 failed conversion(s) again" in done.stderr, done.stderr
    server = Server(tmp_path, env={"CHRONICLE_CONVERSION_TIMEOUT": "120"}).start()
    try:
        again = finished(ann_on(server), document["id"], conversion["id"], timeout=60)
        assert again["status"] == "completed" and "reason" not in again, again
        assert "cloudberry jam" in ann_on(server).get(f"/api/documents/{document['id']}/conversions/{conversion['id']}/content").text
    finally:
        server.stop()
    assert cli(tmp_path, "documents", "reconvert", "--failed").stderr.strip().endswith("requested 0 failed conversion(s) again")


def ann_on(server: Server):
    login = server.client().post("/api/auth/login", {"email": "ann@example.org", "password": "correct horse"})
    return server.client(login.json()["access_token"])


def test_gc_removes_only_unreferenced_blobs_while_the_server_runs(tmp_path):
    server = Server(tmp_path).start()
    try:
        ann, _ = server.client().signup("ann@example.org")
        kept = uploaded(ann, "keep.txt", files.TEXT)
        orphan_bytes = b"left behind by a crash between placing a blob and recording its upload"
        orphan = blob(server, hashlib.sha256(orphan_bytes).hexdigest())
        orphan.parent.mkdir(parents=True, exist_ok=True)
        orphan.write_bytes(orphan_bytes)

        done = cli(tmp_path, "documents", "gc")
        assert done.returncode == 0, done.stderr
        assert f"removed 1 unreferenced blob(s), {len(orphan_bytes)} bytes; kept 1" in done.stderr
        assert not orphan.exists() and blob(server, kept["sha256"]).exists()
        assert ann.get(f"/api/documents/{kept['id']}/content").content == files.TEXT
    finally:
        server.stop()


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    return {
        pid
        for pid in pids
        if Path(f"/proc/{pid}").exists() and "Z" not in (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[:1] or ["Z"])
    }


def test_stopping_the_server_stops_its_conversions_and_they_resume_after(tmp_path):
    server = Server(tmp_path).start()
    try:
        ann, document, conversion = start_converting(server, 80_000)
        deadline = time.monotonic() + 10
        while len(jobs := descendants(server.process.pid)) < 3:  # resource tracker, forkserver, the job
            assert time.monotonic() < deadline, "the conversion runs in a process of its own"
            time.sleep(0.05)
    finally:
        server.stop()
    deadline = time.monotonic() + 5
    while alive(jobs) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert alive(jobs) == set()
    assert list((tmp_path / "blobs" / "incoming").iterdir()) == []
    assert outcomes(tmp_path) == Counter({"ConversionRequested": 1, "ConversionStarted": 1})
    server.start()
    try:
        assert finished(ann_on(server), document["id"], conversion["id"], timeout=60)["status"] == "completed"
    finally:
        server.stop()


def start_converting(server: Server, rows: int) -> tuple:
    """Ann's CSV of `rows` rows, being converted to HTML (a few seconds of work)."""
    ann, _ = server.client().signup("ann@example.org")
    document = uploaded(ann, "ledger.csv", big_csv(rows))
    conversion = ann.post(f"/api/documents/{document['id']}/conversions", {"target": "html"}).json()
    wait_for_status(ann, document["id"], conversion["id"], "running")
    return ann, document, conversion


def wait_for_status(client, document_id: str, conversion_id: str, status: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while (
        client.get(f"/api/documents/{document_id}/conversions/{conversion_id}", params={"after_position": client.head()}).json()["status"]
        != status
    ):
        assert time.monotonic() < deadline, f"never {status}"
        time.sleep(0.05)


def test_a_document_deleted_during_its_conversion_leaves_no_output_behind(tmp_path):
    server = Server(tmp_path).start()
    try:
        ann, document, conversion = start_converting(server, 40_000)
        assert ann.delete(f"/api/documents/{document['id']}").status_code == 200
        deadline = time.monotonic() + 60
        while "ConversionFailed" not in outcomes(tmp_path):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        state = stored_events(tmp_path, "ConversionFailed")[0].state
        assert b'"reason":"document_deleted"' in state
        deadline = time.monotonic() + 10
        while list((tmp_path / "blobs").glob("??/??/*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert list((tmp_path / "blobs").glob("??/??/*")) == []
    finally:
        server.stop()


def test_many_concurrent_uploads_all_land(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    server = Server(tmp_path).start()
    try:
        ann, _ = server.client().signup("ann@example.org")

        def one(n: int) -> int:
            client = server.client(ann.token)
            return client.post("/api/documents", files={"file": (f"n{n}.txt", f"upload number {n} ".encode() * 2000)}).status_code

        with ThreadPoolExecutor(80) as pool:
            statuses = list(pool.map(one, range(120)))
        assert statuses == [201] * 120
        assert len(list((tmp_path / "blobs").glob("??/??/*"))) == 120
        assert ann.get("/health").json()["status"] == "ok"
    finally:
        server.stop()

"""`chronicle serve` with `CHRONICLE_DATABASE_URL`: the event log and the data keys in a real
PostgreSQL database (its own, dropped after), the read models in the data directory's
read.sqlite3 built from that log, all through real HTTP."""

from pathlib import Path

import psycopg
import pytest

from tests.e2e.server import Server, cli
from tests.postgres import fresh_database

pytestmark = pytest.mark.e2e


@pytest.fixture
def database_url():
    with fresh_database() as url:
        yield url


def test_register_post_and_read_back_through_a_server_on_postgresql(database_url: str, tmp_path: Path):
    data_dir = tmp_path / "node"
    server = Server(data_dir, env={"CHRONICLE_DATABASE_URL": database_url}, log_dir=tmp_path).start()
    try:
        ann, user = server.client().signup("ann@example.org", name="Ann")
        session = ann.post("/api/sessions", {"title": "Launch plan", "assistant": False})
        assert session.status_code == 201, session.text
        sid = session.json()["id"]
        posted = ann.post(f"/api/sessions/{sid}/messages", {"content": "We ship on Friday."})
        assert posted.status_code == 201, posted.text
        message = posted.json()
        page = ann.get(f"/api/sessions/{sid}/messages", params={"after_position": message["position"]})
        assert page.status_code == 200
        assert [(m["id"], m["content"]) for m in page.json()["items"]] == [(message["id"], "We ship on Friday.")]
        assert server.client().head() == message["position"]
    finally:
        server.stop()
    with psycopg.connect(database_url) as db:
        stored = db.execute("SELECT max(notification_id), count(*) FROM chronicle_events").fetchone()
        links = db.execute("SELECT count(*) FROM event_chain").fetchone()
    assert stored == (message["position"], message["position"]) and links == (message["position"],)
    assert not (data_dir / "events.sqlite3").exists() and not (data_dir / "keys.sqlite3").exists()
    assert (data_dir / "read.sqlite3").is_file()
    verified = cli(data_dir, "audit", "verify", env={"CHRONICLE_DATABASE_URL": database_url})
    assert verified.returncode == 0, verified.stderr
    assert f"{message['position']} events verified" in verified.stdout

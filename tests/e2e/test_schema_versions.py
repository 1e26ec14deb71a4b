"""The PostgreSQL schema is made and upgraded by Chronicle's numbered steps, through the real
command line and a real server on a real database: a fresh database ends at the latest version,
a database made before versions were recorded is recognised (not made again) and upgraded,
nodes starting together apply each step once, and a node older than the schema refuses."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psycopg
import pytest

from infrastructure.storage.postgres_schema import LATEST
from tests.e2e.server import CHRONICLE, SECRET, Server, cli, free_port
from tests.postgres import fresh_database

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]  # servers on a shared 2-core machine start slowly
START = 120  # seconds for a server to answer /health: generous, the machine is shared
FIXTURE = Path(__file__).parent.parent / "fixtures" / "postgres-v1" / "chronicle.sql"
"""`pg_dump --inserts` of a database made by the code before schema versions (commit 7fdbd38):
two users created with `chronicle users create`, head hash below."""
FIXTURE_HEAD = "0971510b2d2c177d10ef171e7884a2606a99dd3bc5a3fcf75402da4b21587ee0"


@pytest.fixture
def database_url():
    with fresh_database() as url:
        yield url


def db(url: str, *args: str) -> subprocess.CompletedProcess:
    """`chronicle db …` on the database at `url`."""
    return subprocess.run(
        [CHRONICLE, "db", *args, "--database-url", url],
        capture_output=True,
        text=True,
        env={**os.environ, "CHRONICLE_SECRET_KEY": SECRET},
        timeout=120,
    )


def versions(url: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT version, how FROM schema_versions ORDER BY version").fetchall()


def test_a_fresh_database_is_brought_to_the_latest_version(database_url: str, tmp_path: Path):
    before = db(database_url, "status")
    assert before.returncode == 0 and f"schema version 0; this Chronicle's is {LATEST}" in before.stdout
    upgraded = db(database_url, "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert [line for line in upgraded.stdout.splitlines() if line.startswith("applied")] == [
        f"applied version {v}: {name}" for v, name in _names()
    ]
    assert versions(database_url) == [(v, "applied") for v in range(1, LATEST + 1)]
    again = db(database_url, "upgrade")
    assert again.returncode == 0 and again.stdout.strip() == f"schema version {LATEST}"
    status = db(database_url, "status")
    assert f"schema version {LATEST}; this Chronicle's is {LATEST}" in status.stdout and "pending" not in status.stdout


def _names() -> list[tuple[int, str]]:
    from infrastructure.storage.postgres_schema import STEPS

    return [(step.version, step.name) for step in STEPS]


def test_a_database_made_before_versions_is_recognised_and_served(database_url: str, tmp_path: Path):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(FIXTURE.read_text())
        conn.execute("SELECT pg_catalog.set_config('search_path', 'public', false)")
    env = {"CHRONICLE_DATABASE_URL": database_url}
    server = Server(tmp_path / "node", env={**env, "CHRONICLE_READ_WAIT": "60"}, log_dir=tmp_path).start(timeout=START)
    try:
        login = server.client().post("/api/auth/login", {"email": "ann@example.org", "password": "correct horse"})
        assert login.status_code == 200, login.text
        posted = server.client(login.json()["access_token"]).post("/api/sessions", {"title": "After the upgrade", "assistant": False})
        assert posted.status_code == 201 and posted.json()["position"] == 5
    finally:
        server.stop()
    assert versions(database_url) == [(1, "recognised"), *[(v, "applied") for v in range(2, LATEST + 1)]]
    verified = cli(tmp_path / "node", "audit", "verify", "--expect-head", FIXTURE_HEAD, env=env)
    assert verified.returncode == 0 and "5 events verified" in verified.stdout, verified.stderr


def test_nodes_upgrading_at_once_apply_each_step_once(database_url: str, tmp_path: Path):
    env = {"CHRONICLE_DATABASE_URL": database_url, "CHRONICLE_SECRET_KEY": SECRET}
    starts = [
        subprocess.Popen([CHRONICLE, "db", "upgrade"], env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [process.communicate(timeout=120) for process in starts]
    assert [process.returncode for process in starts] == [0, 0, 0, 0], [err for _, err in outputs]
    applied = [line for out, _ in outputs for line in out.splitlines() if line.startswith("applied version")]
    assert sorted(applied) == sorted(f"applied version {v}: {name}" for v, name in _names())
    assert versions(database_url) == [(v, "applied") for v in range(1, LATEST + 1)]


def test_a_node_older_than_the_schema_refuses_to_start(database_url: str, tmp_path: Path):
    env = {"CHRONICLE_DATABASE_URL": database_url}
    assert db(database_url, "upgrade").returncode == 0
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO schema_versions VALUES (%s, 'from a newer Chronicle', now(), 'applied', 'elsewhere')", (LATEST + 1,))
    served = cli(tmp_path / "node", "serve", "--port", str(free_port()), env=env)
    assert served.returncode == 2
    assert f"the database's schema is at version {LATEST + 1}, newer than this Chronicle knows (up to {LATEST})" in served.stderr
    assert "Traceback" not in served.stderr
    for command in (("users", "create", "x@example.org", "--password-stdin"), ("audit", "verify")):
        refused = cli(tmp_path / "node", *command, input="a long password\n", env=env)
        assert refused.returncode == 2 and "newer than this Chronicle knows" in refused.stderr, (command, refused.stderr)
    for command in ("upgrade", "status"):
        refused = db(database_url, command)
        assert refused.returncode == 2 and f"version {LATEST + 1}" in refused.stderr, (command, refused.stderr)
    assert versions(database_url)[-1] == (LATEST + 1, "applied")


@pytest.fixture
def app_role(database_url: str):
    """A login role that may read and write the tables but not create anything (PostgreSQL 15+
    grants no CREATE on `public` to ordinary roles): how an operator runs nodes under an owner."""
    role = f"chronicle_app_{os.urandom(4).hex()}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"REVOKE CREATE ON SCHEMA public FROM PUBLIC, {role}")
    scheme, _, rest = database_url.partition("://")
    yield role, f"{scheme}://{role}@{rest}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def test_a_role_without_create_runs_an_upgraded_schema_and_is_refused_in_one_line_on_a_new_one(database_url, app_role, tmp_path):
    role, role_url = app_role
    env = {"CHRONICLE_DATABASE_URL": role_url}
    refused = cli(tmp_path, "projections", "status", env=env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith("error: cannot prepare the database's schema: permission denied"), line

    assert db(database_url, "upgrade").returncode == 0  # by the owner
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
        conn.execute(f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role}")
    missing = cli(tmp_path / "nowhere", "projections", "status", env=env)
    assert missing.returncode == 2 and missing.stderr.startswith("error: ") and "Traceback" not in missing.stderr, missing.stderr
    (tmp_path / "node").mkdir()
    served = cli(tmp_path / "node", "projections", "status", env=env)
    assert served.returncode == 0, served.stderr

import itertools

import pytest

from tests.e2e.server import Api, Server

_emails = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    running = Server(tmp_path_factory.mktemp("server")).start()
    yield running
    running.stop()


@pytest.fixture
def anon(server: Server) -> Api:
    return server.client()


@pytest.fixture
def new_user(anon: Api):
    def make(name: str = "user") -> tuple[Api, dict]:
        return anon.signup(f"{name}{next(_emails)}@example.org", name=name.title())

    return make


def assert_problem(response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
        assert field in body["detail"]
    return body

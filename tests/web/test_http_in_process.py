"""Request/response behaviour through Litestar's in-process test client (`create_app` on Settings
pointed at tmp_path; the lifespan starts the real bus, runner, engine and worker in this process):
problem-details shapes, pagination cursors, read-your-writes `after_position`, the OpenAPI
document's promises, CSRF on cookie-authenticated writes. The real-process tests in tests/e2e
keep crashes, streams and multi-process behaviour."""

from __future__ import annotations

import pytest
from litestar.testing import TestClient

from infrastructure.web.app import create_app
from tests.backend import settings_for

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    settings = settings_for(tmp_path_factory.mktemp("data"))
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        yield client


@pytest.fixture(scope="module")
def ann(client):
    """A signed-in user: bearer headers and their registration."""
    client.post("/api/auth/register", json={"email": "ann@example.org", "display_name": "Ann", "password": "correct horse battery"})
    token = client.post("/api/auth/login", json={"email": "ann@example.org", "password": "correct horse battery"}).json()
    return {"Authorization": f"Bearer {token['access_token']}"}


def test_an_unknown_session_is_a_404_problem(client, ann):
    response = client.get("/api/sessions/00000000-0000-7000-8000-000000000000", headers=ann)
    assert response.status_code == 404 and response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == 404 and body["title"] and "type" in body


def test_a_request_without_credentials_is_a_401_problem(client):
    response = client.get("/api/sessions")
    assert response.status_code == 401 and response.headers["content-type"].startswith(PROBLEM)


@pytest.mark.parametrize("cursor", ["²", "-1", "1e3", "x", "9" * 40])
def test_a_cursor_that_is_not_ascii_digits_is_a_400_problem_not_a_500(client, ann, cursor):
    response = client.get("/api/sessions", params={"cursor": cursor}, headers=ann)
    assert response.status_code == 400 and response.headers["content-type"].startswith(PROBLEM)


def test_pages_of_messages_follow_their_cursor_and_every_write_is_readable_at_its_position(client, ann):
    created = client.post("/api/sessions", json={"title": "Pages", "assistant": False}, headers=ann)
    assert created.status_code == 201
    session = created.json()
    sent = [client.post(f"/api/sessions/{session['id']}/messages", json={"content": f"m{i}"}, headers=ann).json() for i in range(5)]
    seen, params = [], {"limit": 2, "after_position": sent[-1]["position"]}
    while True:
        page = client.get(f"/api/sessions/{session['id']}/messages", params=params, headers=ann)
        assert page.status_code == 200
        body = page.json()
        seen += [m["content"] for m in body["items"]]
        if not body.get("next_cursor"):
            break
        params = {"limit": 2, "cursor": body["next_cursor"], "after_position": sent[-1]["position"]}
    assert seen == [f"m{i}" for i in range(5)]


def test_the_openapi_document_lists_401_on_every_protected_operation_and_problem_json_on_every_4xx(client):
    document = client.get("/schema/openapi.json").json()
    missing_401, not_problem = [], []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            if operation.get("security") != [] and "401" not in responses and not path.startswith("/schema"):
                missing_401.append(f"{method.upper()} {path}")
            for status, response in responses.items():
                if status.startswith("4") and PROBLEM not in response.get("content", {}):
                    not_problem.append(f"{method.upper()} {path} {status}")
    assert missing_401 == [] and not_problem == []


def test_a_cookie_authenticated_write_needs_the_csrf_header(client):
    client.post("/api/auth/register", json={"email": "bob@example.org", "display_name": "Bob", "password": "correct horse battery"})
    with TestClient(client.app, base_url="http://localhost") as browser:
        credentials = {"email": "bob@example.org", "password": "correct horse battery"}
        assert browser.post("/api/auth/session", json=credentials).status_code == 403, "the cookie sign-in itself"
        browser.get("/api/auth/session")  # any safe request hands out the token cookie
        token = browser.cookies.get("csrftoken")
        assert browser.post("/api/auth/session", json=credentials, headers={"x-csrftoken": token}).status_code == 200
        refused = browser.post("/api/sessions", json={"title": "No token", "assistant": False})
        assert refused.status_code == 403 and refused.headers["content-type"].startswith(PROBLEM)
        accepted = browser.post("/api/sessions", json={"title": "With token", "assistant": False}, headers={"x-csrftoken": token})
        assert accepted.status_code == 201

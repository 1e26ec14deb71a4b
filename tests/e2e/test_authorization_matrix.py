"""Every operation of the route table × {anonymous, stranger, member, owner, auditor, admin}.

The table below says who each operation is for; the test reads the app's own route table, so an
endpoint added without a row fails here. Each cell is one real request against a real server,
with a valid body and a world made for that operation (a session with an owner and a member, a
message by the member, a document of the owner attached to the session, a throwaway user), so a
refusal can only be authorization: 401 for anonymous, 403 or 404 for the others."""

from __future__ import annotations

import tempfile
import uuid
from typing import Any

import pytest
from litestar.routes import HTTPRoute

from tests.e2e.server import Api, Server

pytestmark = pytest.mark.e2e

ROLES = ("anonymous", "stranger", "member", "owner", "auditor", "admin")
ALLOWED: dict[str, set[str]] = {
    "public": set(ROLES),
    "signed_in": set(ROLES) - {"anonymous"},
    "member": {"member", "owner"},
    "owner": {"owner"},
    "author": {"member"},
    "author_or_owner": {"member", "owner"},
    "document_owner": {"owner"},
    "timeline": {"owner", "auditor", "admin"},
    "auditor": {"auditor", "admin"},
    "admin": {"admin"},
}
S, M, D, C, U = "{session_id:uuid}", "{message_id:uuid}", "{document_id:uuid}", "{conversion_id:uuid}", "{user_id:uuid}"
ACCESS: dict[tuple[str, str], tuple[str, Any]] = {
    ("POST", "/api/auth/register"): (
        "public",
        lambda w: {"email": f"r{uuid.uuid4().hex[:8]}@example.org", "password": "correct horse", "display_name": "R"},
    ),
    ("POST", "/api/auth/login"): ("public", lambda w: {"email": w["owner_email"], "password": "correct horse"}),
    ("GET", "/api/auth/session"): ("public", None),
    ("POST", "/api/auth/session"): ("public", "csrf"),
    ("DELETE", "/api/auth/session"): ("signed_in", None),
    ("GET", "/api/auth/invitations/{token:str}"): ("public", None),
    ("POST", "/api/auth/invitations/{token:str}"): ("public", lambda w: {"display_name": "Invitee", "password": "correct horse"}),
    ("POST", "/api/auth/password-reset/{token:str}"): ("public", lambda w: {"new_password": "brand new horse"}),
    ("GET", "/api/me"): ("signed_in", None),
    ("GET", "/api/me/usage"): ("signed_in", None),
    ("POST", "/api/me/password"): ("signed_in", lambda w: {"current_password": "correct horse", "new_password": "correct horse"}),
    ("GET", "/api/users/lookup"): ("signed_in", None),
    ("GET", "/api/sessions"): ("signed_in", None),
    ("POST", "/api/sessions"): ("signed_in", lambda w: {"title": "New"}),
    ("GET", f"/api/sessions/{S}"): ("member", None),
    ("PATCH", f"/api/sessions/{S}"): ("owner", lambda w: {"title": "Renamed"}),
    ("DELETE", f"/api/sessions/{S}"): ("owner", None),
    ("PUT", f"/api/sessions/{S}/read"): ("member", lambda w: {"position": 1}),
    ("PUT", f"/api/sessions/{S}/retention"): ("owner", lambda w: {"retention_days": 30}),
    ("POST", f"/api/sessions/{S}/members"): ("owner", lambda w: {"user_id": w["spare_id"]}),
    ("DELETE", f"/api/sessions/{S}/members/{U}"): ("member", "remove_member"),
    ("GET", f"/api/sessions/{S}/messages"): ("member", None),
    ("POST", f"/api/sessions/{S}/messages"): ("member", lambda w: {"content": "hello"}),
    ("GET", f"/api/sessions/{S}/messages/{M}"): ("member", None),
    ("PATCH", f"/api/sessions/{S}/messages/{M}"): ("author", lambda w: {"content": "edited"}),
    ("DELETE", f"/api/sessions/{S}/messages/{M}"): ("author_or_owner", None),
    ("GET", f"/api/sessions/{S}/messages/{M}/history"): ("author_or_owner", None),
    ("POST", f"/api/sessions/{S}/replies/{{reply_id:uuid}}/cancel"): ("member", None),
    ("GET", f"/api/sessions/{S}/documents"): ("member", None),
    ("POST", f"/api/sessions/{S}/documents"): ("document_owner", lambda w: {"document_id": w["spare_document_id"]}),
    ("DELETE", f"/api/sessions/{S}/documents/{D}"): ("document_owner", None),
    ("GET", "/api/documents"): ("signed_in", None),
    ("POST", "/api/documents"): ("signed_in", "upload"),
    ("GET", f"/api/documents/{D}"): ("member", None),
    ("DELETE", f"/api/documents/{D}"): ("document_owner", None),
    ("GET", f"/api/documents/{D}/content"): ("member", None),
    ("GET", f"/api/documents/{D}/conversions"): ("member", None),
    ("POST", f"/api/documents/{D}/conversions"): ("member", lambda w: {"target": "text"}),
    ("GET", f"/api/documents/{D}/conversions/{C}"): ("member", None),
    ("GET", f"/api/documents/{D}/conversions/{C}/content"): ("member", None),
    ("GET", "/api/search"): ("signed_in", None),
    ("GET", f"/api/audit/sessions/{S}/timeline"): ("timeline", None),
    ("GET", "/api/audit/events"): ("auditor", None),
    ("GET", "/api/audit/export"): ("auditor", None),
    ("GET", "/api/audit/chain"): ("auditor", None),
    ("POST", "/api/audit/verifications"): ("auditor", None),
    ("GET", "/api/audit/verifications/latest"): ("auditor", None),
    ("GET", "/api/admin/users"): ("admin", None),
    ("GET", f"/api/admin/users/{U}"): ("admin", None),
    ("PATCH", f"/api/admin/users/{U}"): ("admin", lambda w: {"role": "user"}),
    ("PUT", f"/api/admin/users/{U}/quotas"): (
        "admin",
        lambda w: {"messages_per_day": None, "replies_per_day": None, "storage_bytes": None},
    ),
    ("POST", f"/api/admin/users/{U}/erase"): ("admin", None),
    ("POST", f"/api/admin/users/{U}/password-reset"): ("admin", None),
    ("POST", "/api/admin/invitations"): ("admin", lambda w: {"email": f"i{uuid.uuid4().hex[:8]}@example.org"}),
    ("GET", "/api/admin/projections"): ("admin", None),
    ("POST", "/api/admin/projections/{name:str}/rebuild"): ("admin", None),
    ("POST", "/api/admin/projections/{name:str}/retry"): ("admin", None),
    ("GET", "/api/admin/stats"): ("admin", None),
    ("GET", "/api/admin/dashboard"): ("admin", None),
    ("GET", "/api/admin/storage"): ("admin", None),
    ("POST", "/api/admin/storage/collect"): ("admin", None),
    ("GET", "/health"): ("public", None),
    ("GET", "/health/ready"): ("public", None),
    ("GET", "/metrics"): ("public", None),
}
REVOKES_CALLER = {("DELETE", "/api/auth/session"), ("POST", "/api/me/password")}
"""Operations that end the caller's own tokens: the caller signs in again afterwards."""
NOT_API = ("/schema", "/{path:path}", "/")
"""The API's documents and the web client's pages: public by design, and not operations."""


def route_table() -> set[tuple[str, str]]:
    from infrastructure.settings import Settings
    from infrastructure.web.app import create_app

    with tempfile.TemporaryDirectory() as scratch:
        app = create_app(Settings.from_env(scratch))
    return {
        (method, route.path)
        for route in app.routes
        if isinstance(route, HTTPRoute) and not route.path.startswith(NOT_API[0]) and route.path not in NOT_API[1:]
        for method in route.methods - {"OPTIONS", "HEAD"}
    }


def test_every_operation_of_the_route_table_has_a_row():
    operations = route_table()
    assert operations - set(ACCESS) == set(), "add a row to ACCESS for every new operation"
    assert set(ACCESS) - operations == set(), "ACCESS names an operation that no longer exists"


@pytest.fixture(scope="module")
def matrix_server(tmp_path_factory):
    running = Server(tmp_path_factory.mktemp("matrix"), env={"CHRONICLE_RATE_LIMIT_LOOKUPS": "0"}).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def people(matrix_server) -> dict[str, Api]:
    anon = matrix_server.client()
    found: dict[str, Any] = {"anonymous": anon}
    for role in ("stranger", "member", "owner", "auditor"):
        found[role], user = anon.signup(f"{role}-{uuid.uuid4().hex[:6]}@example.org", name=role.title())
        found[f"{role}_user"] = user
    found["admin_email"] = f"matrix-admin-{uuid.uuid4().hex[:6]}@example.org"
    from tests.e2e.server import cli

    assert (
        cli(
            matrix_server.data_dir, "users", "create", found["admin_email"], "--role", "admin", "--password-stdin", input="correct horse\n"
        ).returncode
        == 0
    )
    found["admin"] = Api(
        matrix_server.url, anon.post("/api/auth/login", {"email": found["admin_email"], "password": "correct horse"}).json()["access_token"]
    )
    assert found["admin"].patch(f"/api/admin/users/{found['auditor_user']['id']}", {"role": "auditor"}).status_code == 200
    login = anon.post("/api/auth/login", {"email": found["auditor_user"]["email"], "password": "correct horse"}).json()
    found["auditor"] = Api(matrix_server.url, login["access_token"])
    return found


def world(people: dict[str, Any], matrix_server: Server) -> dict[str, Any]:
    """A fresh session with its owner and a member, a message by the member, a document of the
    owner attached to it (converted), a spare user, a spare document, and one-time links."""
    owner, member, admin = people["owner"], people["member"], people["admin"]
    _, spare = matrix_server.client().signup(f"spare-{uuid.uuid4().hex[:8]}@example.org", name="Spare")
    sid = owner.post("/api/sessions", {"title": "World", "assistant": False}).json()["id"]
    owner.post(f"/api/sessions/{sid}/members", {"user_id": people["member_user"]["id"]})
    message = member.post(f"/api/sessions/{sid}/messages", {"content": "member's words"}).json()
    files = {"file": ("notes.txt", b"plain notes for the matrix", "text/plain")}
    document = owner.post("/api/documents", files=files, data={"session_id": sid}).json()
    spare_document = owner.post("/api/documents", files={"file": ("spare.txt", b"spare notes", "text/plain")}).json()
    conversion = owner.post(f"/api/documents/{document['id']}/conversions", {"target": "text"}).json()
    invitation = admin.post("/api/admin/invitations", {"email": f"w{uuid.uuid4().hex[:8]}@example.org"}).json()
    reset = admin.post(f"/api/admin/users/{spare['id']}/password-reset").json()
    admin.post("/api/audit/verifications")
    head = owner.head()
    owner.get(f"/api/sessions/{sid}", params={"after_position": head})
    return {
        "session_id": sid,
        "message_id": message["id"],
        "document_id": document["id"],
        "conversion_id": conversion["id"],
        "user_id": spare["id"],
        "spare_id": spare["id"],
        "spare_document_id": spare_document["id"],
        "reply_id": str(uuid.uuid4()),
        "name": "messages",
        "invitation": invitation["token"],
        "reset": reset["token"],
        "owner_email": people["owner_user"]["email"],
    }


def request_for(role: str, method: str, path: str, how: Any, w: dict[str, Any], people: dict[str, Any], server: Server):
    url = path
    for key in ("session_id", "message_id", "document_id", "conversion_id", "user_id", "reply_id"):
        url = url.replace(f"{{{key}:uuid}}", w[key])
    url = url.replace("{name:str}", w["name"])
    url = url.replace("{token:str}", w["reset"] if "password-reset" in path else w["invitation"])
    if how == "remove_member":  # the owner removes the member, the member leaves; nobody else may
        url = url.replace(w["user_id"], people["member_user"]["id"])
    client: Api = people[role]
    params = {"email": people["owner_user"]["email"]} if path == "/api/users/lookup" else {"q": "words"} if path == "/api/search" else None
    if how == "upload":
        return client.post(url, files={"file": ("up.txt", b"uploaded", "text/plain")})
    if how == "csrf":
        import httpx

        browser = httpx.Client(base_url=server.url, timeout=30)
        browser.get("/health")
        return browser.post(
            url, json={"email": w["owner_email"], "password": "correct horse"}, headers={"x-csrftoken": browser.cookies["csrftoken"]}
        )
    body = how(w) if callable(how) else None
    return client.request(method, url, json=body, params=params)


@pytest.mark.parametrize("operation", sorted(ACCESS), ids=lambda op: f"{op[0]} {op[1]}")
def test_each_role_is_allowed_or_refused_as_the_table_says(operation, matrix_server, people):
    method, path = operation
    access, how = ACCESS[operation]
    results = {}
    shared = world(people, matrix_server)
    for role in ROLES:
        # A request that may change the world (an allowed role's write) gets a world of its own.
        w = world(people, matrix_server) if method != "GET" and role in ALLOWED[access] else shared
        response = request_for(role, method, path, how, w, people, matrix_server)
        results[role] = response.status_code
        if operation in REVOKES_CALLER and role != "anonymous":
            email = people[f"{role}_user"]["email"] if role != "admin" else people["admin_email"]
            login = matrix_server.client().post("/api/auth/login", {"email": email, "password": "correct horse"})
            people[role] = Api(matrix_server.url, login.json()["access_token"])
        assert response.status_code < 500, (role, response.text)
    refused = {role for role, status in results.items() if status in (401, 403, 404)}
    expected_refused = set(ROLES) - ALLOWED[access]
    assert refused == expected_refused, results
    if "anonymous" in expected_refused:
        assert results["anonymous"] == 401, results

"""Signing in from a browser (cookie + CSRF), signing out, and what ends a token, against a
real server. API clients with a bearer token are unaffected (every other e2e test is one)."""

import json
import time

import httpx
import jwt
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.e2e.conftest import assert_problem
from tests.e2e.server import SECRET, Api
from tests.e2e.test_streams import close_code, ws_url

pytestmark = pytest.mark.e2e


def browser(server) -> httpx.Client:
    """A client that keeps cookies like a browser, having loaded a page (the CSRF cookie)."""
    client = httpx.Client(base_url=server.url, timeout=30)
    assert client.get("/health").status_code == 200
    assert client.cookies.get("csrftoken")
    return client


def csrf(client: httpx.Client) -> dict[str, str]:
    return {"x-csrftoken": client.cookies["csrftoken"]}


def sign_in(server, new_user) -> tuple[httpx.Client, dict]:
    _, user = new_user("carol")
    client = browser(server)
    response = client.post("/api/auth/session", json={"email": user["email"], "password": "correct horse"}, headers=csrf(client))
    assert response.status_code == 200, response.text
    assert response.json()["id"] == user["id"]
    return client, user


def test_a_browser_signs_in_with_an_httponly_strict_cookie_and_sends_the_csrf_token_on_writes(server, new_user):
    client, user = sign_in(server, new_user)
    cookie = next(c for c in client.cookies.jar if c.name == "chronicle_token")
    assert cookie.has_nonstandard_attr("HttpOnly") and cookie.get_nonstandard_attr("SameSite").lower() == "strict"
    assert client.get("/api/me").json()["id"] == user["id"]
    assert_problem(client.post("/api/sessions", json={"title": "forged"}), 403)  # a cross-site form cannot send the header
    created = client.post("/api/sessions", json={"title": "mine"}, headers=csrf(client))
    assert created.status_code == 201
    titles = [s["title"] for s in client.get("/api/sessions", params={"after_position": created.json()["position"]}).json()["items"]]
    assert titles == ["mine"]


def test_the_cookie_sign_in_itself_needs_the_csrf_token_and_refuses_bad_passwords(server, new_user):
    _, user = new_user("dan")
    client = browser(server)
    assert_problem(client.post("/api/auth/session", json={"email": user["email"], "password": "correct horse"}), 403)
    assert "chronicle_token" not in client.cookies
    wrong = client.post("/api/auth/session", json={"email": user["email"], "password": "wrong horse"}, headers=csrf(client))
    assert_problem(wrong, 401)


def test_signing_out_ends_the_cookie_and_every_earlier_token(server, new_user):
    client, user = sign_in(server, new_user)
    old_cookie = client.cookies["chronicle_token"]
    bearer = client.post("/api/auth/login", json={"email": user["email"], "password": "correct horse"}, headers=csrf(client)).json()[
        "access_token"
    ]
    assert client.delete("/api/auth/session", headers=csrf(client)).status_code == 204
    assert "chronicle_token" not in client.cookies
    assert_problem(httpx.get(f"{server.url}/api/me", cookies={"chronicle_token": old_cookie}), 401)
    assert_problem(Api(server.url, bearer).get("/api/me"), 401)


def test_a_password_change_ends_earlier_tokens_and_gives_the_browser_a_new_cookie(server, new_user, anon):
    client, user = sign_in(server, new_user)
    other_device = anon.post("/api/auth/login", {"email": user["email"], "password": "correct horse"}).json()["access_token"]
    changed = client.post(
        "/api/me/password", json={"current_password": "correct horse", "new_password": "battery staple"}, headers=csrf(client)
    )
    assert changed.status_code == 200, changed.text
    assert_problem(Api(server.url, other_device).get("/api/me"), 401)
    assert client.get("/api/me").status_code == 200  # the new cookie


def test_a_role_change_and_disabling_end_the_users_tokens(server, new_user):
    admin = server.admin()
    bob, bob_user = new_user("bob")
    assert admin.patch(f"/api/admin/users/{bob_user['id']}", {"role": "auditor"}).status_code == 200
    assert_problem(bob.get("/api/me"), 401)
    bob2 = Api(
        server.url,
        server.client().post("/api/auth/login", {"email": bob_user["email"], "password": "correct horse"}).json()["access_token"],
    )
    assert bob2.get("/api/me").json()["role"] == "auditor"
    assert admin.patch(f"/api/admin/users/{bob_user['id']}", {"disabled": True}).status_code == 200
    assert_problem(bob2.get("/api/me"), 401)


def forged(sub: str, role: str = "admin", gen: int | None = 0) -> str:
    extras = {"role": role} | ({"gen": gen} if gen is not None else {})
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + 600, "extras": extras}, SECRET, algorithm="HS256")


@pytest.mark.parametrize("sub", ["not-a-uuid", "", "0e6b9f67-659e-4591-8a14-766bfdee2f60"], ids=["not a uuid", "empty", "no such user"])
def test_a_signed_token_for_no_user_is_refused_never_trusted_for_its_role(server, sub):
    response = Api(server.url, forged(sub)).get("/api/admin/stats")
    assert_problem(response, 401)


def test_a_token_without_a_generation_is_refused(server, new_user):
    _, user = new_user("old")
    assert_problem(Api(server.url, forged(user["id"], "user", None)).get("/api/me"), 401)


def test_a_cookie_stream_is_accepted_from_this_site_and_closed_4403_from_a_foreign_origin(server, new_user):
    client, user = sign_in(server, new_user)
    cookie = f"chronicle_token={client.cookies['chronicle_token']}"
    url = ws_url(server, "/api/stream", None, 0)
    with connect(url, additional_headers={"cookie": cookie}, origin=f"http://127.0.0.1:{server.port}") as ws:
        ws.send('{"type": "ping"}')
        assert json.loads(ws.recv(timeout=5)) == {"type": "pong"}
    with connect(url, additional_headers={"cookie": cookie}, origin="https://evil.example") as ws:
        assert close_code(ws) == 4403
    with connect(url, additional_headers={"cookie": cookie}) as ws:  # no Origin: not a browser, not trusted with a cookie
        assert close_code(ws) == 4403


def test_a_member_resuming_beyond_the_head_gets_nothing_once_removed(server, new_user):
    """The leak: `after` beyond the head used to skip the member.removed frame, and the
    assistant's ephemeral frames kept quoting the session to the removed member."""
    ann, _ = new_user("ann")
    bob, bob_user = new_user("bob")
    sid = ann.post("/api/sessions", {"title": "Vault", "assistant": False}).json()["id"]
    ann.post(f"/api/sessions/{sid}/messages", {"content": "The vault code is 4711."})
    ann.post(f"/api/sessions/{sid}/members", {"user_id": bob_user["id"]})
    assert ann.patch(f"/api/sessions/{sid}", {"assistant": True}).status_code == 200
    with connect(ws_url(server, f"/api/sessions/{sid}/stream", bob.token, 999_999_999)) as ws:
        ws.send('{"type":"ping"}')
        assert json.loads(ws.recv(timeout=5)) == {"type": "pong"}  # admitted and live
        assert ann.delete(f"/api/sessions/{sid}/members/{bob_user['id']}").status_code == 200
        ann.post(f"/api/sessions/{sid}/messages", {"content": "What is the vault code?"})
        received = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                received.append(json.loads(ws.recv(timeout=20)))
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403, received
    assert all("4711" not in json.dumps(frame) and "vault" not in json.dumps(frame).lower() for frame in received), received
    assert not any(frame["type"].startswith(("reply.", "message.")) for frame in received), received


def test_members_see_who_is_typing_and_the_typist_does_not(server, new_user):
    ann, _ = new_user("ann")
    bob, bob_user = new_user("bob")
    sid = ann.post("/api/sessions", {"title": "Typing", "assistant": False}).json()["id"]
    head = ann.post(f"/api/sessions/{sid}/members", {"user_id": bob_user["id"]}).json()["position"]
    with (
        connect(ws_url(server, f"/api/sessions/{sid}/stream", ann.token, head)) as ann_ws,
        connect(ws_url(server, f"/api/sessions/{sid}/stream", bob.token, head)) as bob_ws,
    ):
        bob_ws.send('{"type": "typing"}')
        frame = json.loads(ann_ws.recv(timeout=5))
        assert frame == {"session_id": sid, "type": "typing", "user_id": bob_user["id"], "display_name": "Bob"}
        bob_ws.send('{"type":"ping"}')
        assert json.loads(bob_ws.recv(timeout=5)) == {"type": "pong"}  # not its own typing frame first


def test_the_newest_page_comes_first_with_dir_b_and_the_cursor_goes_back(new_user):
    ann, _ = new_user("ann")
    sid = ann.post("/api/sessions", {"title": "Long", "assistant": False}).json()["id"]
    posted = [ann.post(f"/api/sessions/{sid}/messages", {"content": f"m{i}"}).json() for i in range(7)]
    first = ann.get(f"/api/sessions/{sid}/messages", params={"dir": "b", "limit": 3, "after_position": posted[-1]["position"]}).json()
    assert [m["content"] for m in first["items"]] == ["m6", "m5", "m4"]
    second = ann.get(f"/api/sessions/{sid}/messages", params={"dir": "b", "limit": 3, "cursor": first["next_cursor"]}).json()
    assert [m["content"] for m in second["items"]] == ["m3", "m2", "m1"]
    third = ann.get(f"/api/sessions/{sid}/messages", params={"dir": "b", "limit": 3, "cursor": second["next_cursor"]}).json()
    assert [m["content"] for m in third["items"]] == ["m0"] and third["next_cursor"] is None


@pytest.mark.parametrize("cursor", ["²", "①", "١٢"])
def test_a_cursor_of_non_ascii_digits_is_a_400_on_every_list(new_user, cursor):
    ann, _ = new_user("ann")
    sid = ann.post("/api/sessions", {"title": "c"}).json()["id"]
    for path in ("/api/sessions", f"/api/sessions/{sid}/messages", "/api/documents"):
        assert_problem(ann.get(path, params={"cursor": cursor}), 400, "cursor")


def test_finding_a_person_to_invite_by_exact_email(new_user, anon):
    ann, _ = new_user("ann")
    _, bob_user = new_user("bob")
    found = ann.get("/api/users/lookup", params={"email": bob_user["email"].upper()})
    assert found.json() == {"id": bob_user["id"], "display_name": "Bob"}
    assert_problem(ann.get("/api/users/lookup", params={"email": "nobody@example.org"}), 404)
    assert_problem(anon.get("/api/users/lookup", params={"email": bob_user["email"]}), 401)


def test_the_browser_asks_whether_it_is_signed_in_without_a_failed_request(server, new_user):
    client = browser(server)
    assert client.get("/api/auth/session").json() == {"signed_in": False, "user": None}
    client, user = sign_in(server, new_user)
    session = client.get("/api/auth/session").json()
    assert session["signed_in"] is True and session["user"]["id"] == user["id"]
    client.delete("/api/auth/session", headers=csrf(client))
    assert client.get("/api/auth/session").json()["signed_in"] is False


def test_the_web_client_and_the_api_docs_are_served_with_nothing_from_elsewhere(server):
    page = httpx.get(f"{server.url}/sessions/any-client-route")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache" and "script-src 'self'" in page.headers["content-security-policy"]
    asset = next(a for a in page.text.split('"') if a.startswith("/assets/") and a.endswith(".js"))
    served = httpx.get(f"{server.url}{asset}", headers={"accept-encoding": "gzip"})
    assert served.status_code == 200 and "immutable" in served.headers["cache-control"]
    assert served.headers["content-encoding"] == "gzip"
    assert_problem(httpx.get(f"{server.url}/api/no-such-thing"), 404)
    assert_problem(httpx.get(f"{server.url}/assets/no-such-file.js"), 404)
    link = httpx.get(f"{server.url}/invite/0123456789abcdef0123456789abcdef.s3cr3t-With.dots")
    assert link.status_code == 200 and link.headers["content-type"].startswith("text/html")  # a client route with dots
    docs = httpx.get(f"{server.url}/schema")
    assert docs.status_code == 200 and "/api-docs/rapidoc-min.js" in docs.text and "https://" not in docs.text.split("<body")[0]
    assert httpx.get(f"{server.url}/api-docs/rapidoc-min.js").status_code == 200

"""Rate limits: moving windows per address, per account and per user; every refusal a 429
problem naming its limit with Retry-After; forwarded addresses believed only from trusted proxies."""

import httpx
import pytest

from tests.e2e.conftest import assert_problem
from tests.e2e.server import Server

pytestmark = pytest.mark.e2e

WRONG = {"email": "x@example.org", "password": "whatever!"}


def refused(response, limit: str) -> dict:
    body = assert_problem(response, 429)
    assert body["limit"] == limit and int(response.headers["retry-after"]) >= 1
    return body


def test_sign_in_attempts_per_address_and_forged_forwarded_for_changes_nothing(tmp_path):
    server = Server(tmp_path, env={"CHRONICLE_RATE_LIMIT_LOGIN": "3"}).start()
    try:
        anon = server.client()
        codes = [anon.post("/api/auth/login", WRONG, headers={"x-forwarded-for": f"10.0.0.{n}"}).status_code for n in range(12)]
        assert codes == [401] * 3 + [429] * 9
        refused(anon.post("/api/auth/login", WRONG), "login")
    finally:
        server.stop()


def test_requests_that_hash_a_password_without_a_signed_in_user_are_limited_per_address(tmp_path):
    """Registering (even with an address already taken), accepting an invitation and resetting a
    password each make the server hash a password before anything else can refuse them."""
    server = Server(tmp_path, env={"CHRONICLE_RATE_LIMIT_PASSWORDS": "3"}).start()
    try:
        anon = server.client()
        new = {"email": "ann@example.org", "password": "correct horse", "display_name": "Ann"}
        assert anon.post("/api/auth/register", new).status_code == 201
        head = anon.head()
        assert_problem(anon.post("/api/auth/register", new), 409)
        bogus = "0" * 32 + ".x"
        assert anon.post(f"/api/auth/password-reset/{bogus}", {"new_password": "another horse"}).status_code in (400, 404, 410)
        refused(anon.post("/api/auth/register", {**new, "email": "bob@example.org"}), "passwords")
        refused(anon.post(f"/api/auth/invitations/{bogus}", {"password": "correct horse", "display_name": "Eve"}), "passwords")
        refused(anon.post(f"/api/auth/password-reset/{bogus}", {"new_password": "another horse"}), "passwords")
        assert anon.head() == head, "nothing after Ann's registration was recorded"
        assert anon.post("/api/auth/login", {"email": "ann@example.org", "password": "correct horse"}).status_code == 200
    finally:
        server.stop()


def test_wrong_current_passwords_are_limited_like_failed_sign_ins(tmp_path):
    server = Server(tmp_path, env={"CHRONICLE_RATE_LIMIT_LOGIN_FAILURES": "2"}).start()
    try:
        ann, user = server.client().signup("ann@example.org")
        guesses = [ann.post("/api/me/password", {"current_password": f"guess {n}", "new_password": "stolen horse"}) for n in range(2)]
        assert [g.status_code for g in guesses] == [403, 403]
        refused(ann.post("/api/me/password", {"current_password": "correct horse", "new_password": "stolen horse"}), "login_account")
        assert server.client().post("/api/auth/login", {"email": user["email"], "password": "correct horse"}).status_code == 200
    finally:
        server.stop()


def test_strangers_failed_sign_ins_do_not_stop_the_owner_changing_the_password(tmp_path):
    server = Server(tmp_path, env={"CHRONICLE_RATE_LIMIT_LOGIN_FAILURES": "2"}).start()
    try:
        _, user = server.client().signup("ann@example.org")
        browser = httpx.Client(base_url=server.url, timeout=30)
        browser.get("/health")
        csrf = {"x-csrftoken": browser.cookies["csrftoken"]}
        signed = browser.post("/api/auth/session", json={"email": user["email"], "password": "correct horse"}, headers=csrf)
        assert signed.status_code == 200
        attacker = server.client()
        assert [attacker.post("/api/auth/login", {"email": user["email"], "password": "guess"}).status_code for _ in range(2)] == [401, 401]
        refused(attacker.post("/api/auth/login", {"email": user["email"], "password": "correct horse"}), "login_account")
        changed = browser.post("/api/me/password", json={"current_password": "correct horse", "new_password": "newer horse"}, headers=csrf)
        assert changed.status_code == 200, changed.text
    finally:
        server.stop()


def test_other_writes_to_sessions_are_limited_per_user_apart_from_posting(tmp_path):
    """Edits, deletions and read markers each append an event (most a frame to every member)."""
    server = Server(tmp_path, env={"CHRONICLE_RATE_LIMIT_WRITES": "3"}).start()
    try:
        ann, _ = server.client().signup("ann@example.org")
        bob, _ = server.client().signup("bob@example.org")
        sid = ann.post("/api/sessions", {"title": "Plans", "assistant": False}).json()["id"]  # write 1
        message = ann.post(f"/api/sessions/{sid}/messages", {"content": "draft"}).json()  # a post: not a write
        assert ann.patch(f"/api/sessions/{sid}/messages/{message['id']}", {"content": "draft 2"}).status_code == 200
        assert ann.put(f"/api/sessions/{sid}/read", {"position": message["position"]}).status_code == 200
        head = ann.head()
        refused(ann.patch(f"/api/sessions/{sid}/messages/{message['id']}", {"content": "draft 3"}), "writes")
        refused(ann.put(f"/api/sessions/{sid}/read", {"position": head}), "writes")
        refused(ann.delete(f"/api/sessions/{sid}/messages/{message['id']}"), "writes")
        assert ann.head() == head, "a refused write appends nothing"
        assert ann.post(f"/api/sessions/{sid}/messages", {"content": "posting has its own limit"}).status_code == 201
        assert bob.post("/api/sessions", {"title": "Bob's", "assistant": False}).status_code == 201  # per user
    finally:
        server.stop()


def test_searches_are_limited_per_user(tmp_path):
    """A search ranks every message and passage the user may read that holds its words."""
    server = Server(tmp_path, env={"CHRONICLE_RATE_LIMIT_SEARCHES": "2"}).start()
    try:
        ann, _ = server.client().signup("ann@example.org")
        bob, _ = server.client().signup("bob@example.org")
        codes = [ann.get("/api/search", params={"q": f"plan {n}"}).status_code for n in range(2)]
        assert codes == [200, 200]
        refused(ann.get("/api/search", params={"q": "plan"}), "searches")
        refused(ann.get("/api/search", params={"q": "plan", "kind": "documents"}), "searches")
        assert bob.get("/api/search", params={"q": "plan"}).status_code == 200  # per user
    finally:
        server.stop()


def test_forwarded_for_is_believed_from_a_trusted_proxy(tmp_path):
    server = Server(tmp_path, env={"CHRONICLE_RATE_LIMIT_LOGIN": "2", "CHRONICLE_TRUSTED_PROXIES": "127.0.0.1"}).start()
    try:
        anon = server.client()
        first = [anon.post("/api/auth/login", WRONG, headers={"x-forwarded-for": "203.0.113.7"}).status_code for _ in range(3)]
        other = anon.post("/api/auth/login", WRONG, headers={"x-forwarded-for": "203.0.113.8"}).status_code
        assert first == [401, 401, 429] and other == 401
    finally:
        server.stop()


def test_an_account_is_locked_after_failures_but_not_for_a_browser_that_signed_in_before(tmp_path):
    server = Server(tmp_path, env={"CHRONICLE_RATE_LIMIT_LOGIN_FAILURES": "3"}).start()
    try:
        anon = server.client()
        _, user = anon.signup("ann@example.org")  # signs in once with the API (counts no failure)
        owner_browser = httpx.Client(base_url=server.url, timeout=30)
        owner_browser.get("/health")
        signed = owner_browser.post(
            "/api/auth/session",
            json={"email": user["email"], "password": "correct horse"},
            headers={"x-csrftoken": owner_browser.cookies["csrftoken"]},
        )
        assert signed.status_code == 200 and owner_browser.cookies.get("chronicle_device")
        attacker = server.client()
        spellings = ["ANN@example.org", "\uff41nn@example.org", " Ann@Example.ORG "]  # all reach Ann's account (NFKC, case-folded)
        codes = [attacker.post("/api/auth/login", {"email": email, "password": "a guess"}).status_code for email in spellings]
        assert codes == [401, 401, 401]
        body = refused(attacker.post("/api/auth/login", {"email": user["email"], "password": "correct horse"}), "login_account")
        assert "retry" in body["detail"]
        again = owner_browser.post(
            "/api/auth/session",
            json={"email": user["email"], "password": "correct horse"},
            headers={"x-csrftoken": owner_browser.cookies["csrftoken"]},
        )
        assert again.status_code == 200, again.text
    finally:
        server.stop()


def test_posting_is_limited_per_user_in_a_moving_window(tmp_path):
    server = Server(tmp_path, env={"CHRONICLE_RATE_LIMIT_POSTS": "3"}).start()
    try:
        ann, _ = server.client().signup("ann@example.org")
        bob, _ = server.client().signup("bob@example.org")
        ann_sid = ann.post("/api/sessions", {"title": "a", "assistant": False}).json()["id"]
        bob_sid = bob.post("/api/sessions", {"title": "b"}).json()["id"]
        head = ann.head()
        codes = [ann.post(f"/api/sessions/{ann_sid}/messages", {"content": "x"}).status_code for _ in range(3)]
        assert codes == [201, 201, 201]
        refused(ann.post(f"/api/sessions/{ann_sid}/messages", {"content": "x"}), "posts")
        assert ann.head() == head + 3  # the refused post appended nothing
        assert bob.post(f"/api/sessions/{bob_sid}/messages", {"content": "x"}).status_code == 201
    finally:
        server.stop()

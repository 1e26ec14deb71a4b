"""ETags across processes (ADR-045): read-model swaps made by another process (the CLI's
rebuild, the erasure rebuild the server runs in the background) change every tag, even where
no event moved a change position, so a copy cached before an erasure is never revalidated."""

from __future__ import annotations

import pytest

from tests.e2e.server import Server, cli
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e


def conditional(api, path: str, tag: str | None = None, **params):
    return api.get(path, params=params, headers={"If-None-Match": tag} if tag else {})


def test_a_rebuild_in_another_process_changes_every_tag_and_an_erasure_rebuild_shows_erased_content(tmp_path):
    server = Server(tmp_path).start()
    try:
        admin = server.admin()
        ann, _ = server.client().signup("ann@example.org", name="Ann")
        bob, bob_user = server.client().signup("bob@example.org", name="Bob")
        sid = ann.post("/api/sessions", {"title": "Plans", "assistant": False}).json()["id"]
        ann.post(f"/api/sessions/{sid}/members", {"user_id": bob_user["id"]})
        last = bob.post(f"/api/sessions/{sid}/messages", {"content": "Bob's secret plan"}).json()
        paths = {"messages": f"/api/sessions/{sid}/messages", "session": f"/api/sessions/{sid}", "mine": "/api/sessions"}

        def tags() -> dict[str, str]:
            found = {}
            for view, path in paths.items():
                response = conditional(ann, path, after_position=last["position"])
                assert response.status_code == 200, response.text
                found[view] = response.headers["etag"]
            return found

        before = wait_for(
            lambda: (t := tags()) and all(conditional(ann, paths[v], t[v]).status_code == 304 for v in t) and t, "tags in step", timeout=60
        )

        rebuilt = cli(server.data_dir, "projections", "rebuild", "messages")
        assert rebuilt.returncode == 0, rebuilt.stderr
        for view, path in paths.items():
            assert conditional(ann, path, before[view]).status_code == 200, f"{view}: the swap must change the tag"
        after_swap = wait_for(
            lambda: (t := tags()) and all(conditional(ann, paths[v], t[v]).status_code == 304 for v in t) and t, "new tags", timeout=60
        )
        assert conditional(ann, paths["messages"]).json()["items"][-1]["content"] == "Bob's secret plan", "same content, new tag"

        assert admin.post(f"/api/admin/users/{bob_user['id']}/erase").status_code == 202
        wait_for(
            lambda: conditional(ann, paths["messages"]).json()["items"][-1]["content"] == "[erased]", "the erasure rebuild", timeout=60
        )
        for view, path in paths.items():
            stale = conditional(ann, path, after_swap[view])
            assert stale.status_code == 200 and stale.headers["etag"] != after_swap[view], view
        members = {m["user_id"]: m["display_name"] for m in conditional(ann, paths["session"], after_swap["session"]).json()["members"]}
        assert members[bob_user["id"]] == "[erased]"
    finally:
        server.stop()
    assert "Traceback" not in server.log_path.read_text()

"""The message search projector (`message_search` FTS5, `message_search_rows`): a post is
found by its words, an edit replaces them, a deletion removes them, assistant replies are not
indexed, search respects membership; erasure after a rebuild; replay and rebuild stability."""

import pytest

from application.chat import PostMessage
from projections import search
from projections.members import SessionMembersProjector
from projections.messages import SessionMessagesProjector
from projections.search import SearchIndexProjector
from tests.projections.projection_log import (
    Projected,
    assert_rebuild_gives_the_same_rows,
    assert_replay_changes_nothing,
    search_hits,
)


def projector(write_side):
    """The projector under test (the `projected` fixture in conftest.py builds it)."""
    return SearchIndexProjector()


def found(projected, word):
    rows = projected.rows("SELECT message_id FROM message_search WHERE message_search MATCH ?", (word,))
    return {r["message_id"] for r in rows}


def test_a_post_is_found_by_its_words_and_stemmed_forms(log, projected):
    ann = log.user("ann@example.org")
    session = log.session(ann, assistant=False)
    message = log.post(session, ann, "the deployments are running")
    projected.catch_up()
    assert found(projected, "deployment") == found(projected, "run") == {str(message)}
    assert found(projected, "banana") == set()


def test_an_edit_replaces_the_indexed_words(log, projected):
    ann = log.user("ann@example.org")
    session = log.session(ann, assistant=False)
    message = log.post(session, ann, "apples")
    projected.catch_up()
    log.edit(session, message, ann, "oranges")
    projected.catch_up()
    assert (found(projected, "apples"), found(projected, "oranges")) == (set(), {str(message)})


def test_a_deleted_message_is_no_longer_found(log, projected):
    ann = log.user("ann@example.org")
    session = log.session(ann, assistant=False)
    message = log.post(session, ann, "secret plans")
    log.delete(session, message, ann)
    projected.catch_up()
    assert found(projected, "plans") == set()
    assert projected.rows("SELECT * FROM message_search_rows") == []


def test_messages_of_the_assistant_role_are_not_indexed(log, projected):
    ann = log.user("ann@example.org")
    session = log.session(ann, assistant=False)
    log.run(PostMessage(session, ann, "assistant words", role="assistant"), ann)
    projected.catch_up()
    assert found(projected, "words") == set()


@pytest.mark.parametrize("named", [True, False], ids=["sessions-named-in-the-index-query", "words-alone-when-they-match-few"])
def test_search_finds_only_what_the_searcher_may_read(write_side, log, tmp_path, monkeypatch, named):
    # which of the two equivalent index queries runs depends on how many rows the words match
    monkeypatch.setattr(search, "NAMED_ID_COST", 0 if named else 10**9)
    ann, bob = log.user("ann@example.org"), log.user("bob@example.org")
    shared, private = log.session(ann, "Shared", assistant=False), log.session(ann, "Private", assistant=False)
    log.add(shared, ann, bob)
    in_shared = log.post(shared, ann, "budget shared")
    in_private = log.post(private, ann, "budget private")
    projected = Projected(write_side, SearchIndexProjector(), tmp_path / "read.sqlite3").catch_up()
    members = Projected(write_side, SessionMembersProjector(), tmp_path / "read.sqlite3").catch_up()
    messages = Projected(write_side, SessionMessagesProjector(), tmp_path / "read.sqlite3").catch_up()  # the hits' dates

    def visible_to(user, word="budget"):
        return search_hits(tmp_path / "read.sqlite3", search.search_visible_messages, "message_id", user, word)

    def in_session(session, word="budget"):
        return search_hits(tmp_path / "read.sqlite3", search.search_messages, "message_id", session, word)

    assert visible_to(bob) == {str(in_shared)}
    assert visible_to(ann) == {str(in_shared), str(in_private)}
    assert visible_to(log.user("eve@example.org")) == set()
    assert (in_session(shared), in_session(private)) == ({str(in_shared)}, {str(in_private)})
    # the index holds session ids too, but words match only what was said
    for part in [*str(shared).split("-"), str(shared).replace("-", "")]:
        assert visible_to(ann, part) == in_session(shared, part) == set()
    projected.close()
    members.close()
    messages.close()


def test_an_erased_authors_words_are_not_found_after_a_rebuild(log, projected):
    ann, bob = log.user("ann@example.org"), log.user("bob@example.org")
    session = log.session(ann, assistant=False)
    log.add(session, ann, bob)
    log.post(session, bob, "confidential merger")
    log.post(session, ann, "public merger")
    log.erase(bob)
    projected.rebuild()
    assert len(found(projected, "merger")) == 1 and found(projected, "confidential") == set()


def scenario(log):
    ann = log.user("ann@example.org")
    session = log.session(ann, assistant=False)
    for n in range(8):
        message = log.post(session, ann, f"note number {n} about topic{n % 3}")
        if n % 3 == 0:
            log.edit(session, message, ann, f"edited note {n}")
        if n % 4 == 1:
            log.delete(session, message, ann)


def test_replaying_the_log_changes_no_row(write_side, log, projected, tmp_path):
    scenario(log)
    projected.catch_up()
    assert_replay_changes_nothing(write_side, projected, tmp_path)


def test_a_rebuild_from_the_log_gives_the_same_rows(write_side, log, projected, tmp_path):
    scenario(log)
    projected.catch_up()
    assert_rebuild_gives_the_same_rows(write_side, projected, tmp_path)

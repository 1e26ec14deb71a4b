"""The full-text index of messages (SQLite FTS5, BM25 ranking), searched per user's visibility.
The assistant's own replies are not indexed, so it never cites itself.

`session_term` indexes the session's id as one term, so that a query can be narrowed to the
sessions it may read inside the index (`narrowed`): matched on words alone, a common word made
SQLite rank every message in every session holding it before the membership join picked out the
reader's (20 ms of CPU at 40,000 messages, growing with everyone's messages). Words are matched
in `content` only, and BM25 weighs `session_term` 0, so the ranking is still by the words (but
for the one token the term adds to each row's length, which BM25 normalises by)."""

from __future__ import annotations

import re
from typing import Any

from domain.message import Message
from projections.projector import Projector, collect_handlers, handles
from projections.storage import ReadConnection, ReadTransaction, Row

_WORD = re.compile(r"\w{2,}", re.UNICODE)
_STOPWORDS = frozenset(
    "a an and are as at be but by did do does for from had has have how i in is it me my of on or our so "
    "that the their them there these they this to was we were what when where which who why will with "
    "you your about say says said decide decided tell".split()
)


@collect_handlers
class SearchIndexProjector(Projector):
    name = "search"
    rebuild_cost = 3
    tables = ("message_search", "message_search_rows")
    schema = (
        """CREATE VIRTUAL TABLE IF NOT EXISTS message_search USING fts5(
            content, session_term, session_id UNINDEXED, message_id UNINDEXED, author_id UNINDEXED,
            tokenize='porter unicode61')""",
        """CREATE TABLE IF NOT EXISTS message_search_rows (
            message_id TEXT PRIMARY KEY, row INTEGER NOT NULL)""",
    )

    @handles(Message.MessagePosted)
    def _posted(self, tx: ReadTransaction, e: Any, position: int) -> None:
        if e.role == "assistant":
            return
        message_id, session_id = str(e.originator_id), str(e.session_id)
        tx.insert(
            "INSERT INTO message_search (rowid, content, session_term, session_id, message_id, author_id) VALUES (?,?,?,?,?,?)",
            (position, e.content, index_term(session_id), session_id, message_id, str(e.author_id)),
        )
        tx.insert("INSERT INTO message_search_rows VALUES (?,?)", (message_id, position))

    @handles(Message.MessageEdited)
    def _edited(self, tx: ReadTransaction, e: Any, position: int) -> None:
        tx.execute(
            "UPDATE message_search SET content=? WHERE rowid=(SELECT row FROM message_search_rows WHERE message_id=?)",
            (e.content, str(e.originator_id)),
        )

    @handles(Message.MessageDeleted)
    def _deleted(self, tx: ReadTransaction, e: Any, position: int) -> None:
        message_id = str(e.originator_id)
        tx.execute("DELETE FROM message_search WHERE rowid=(SELECT row FROM message_search_rows WHERE message_id=?)", (message_id,))
        tx.execute("DELETE FROM message_search_rows WHERE message_id=?", (message_id,))


MAX_TERMS = 32


def search_terms(text: str) -> list[str]:
    """The words worth searching for, in order, without repeats, at most MAX_TERMS."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(text.lower()):
        if word not in _STOPWORDS:
            seen.setdefault(word)
            if len(seen) == MAX_TERMS:
                break
    return list(seen)


NAMED_ID_COST = 40
"""An id named in an index query costs about as much as ranking this many of the words' matches
(≈ 25 µs against ≈ 0.6-1.5 µs, at 40,000 messages): see `narrowed`."""
MAX_NAMED = 100
"""Beyond this many ids the words alone are cheaper whatever they match: each match within the
named ids also costs a step through all of them (at 40,000 messages over 800 sessions, a common
word within 128 of them cost 0.7-1.0x the words alone, within 180 1.1x, within 256 1.6x)."""


def match_expression(terms: list[str], operator: str = "OR") -> str:
    """An FTS5 query matching any (OR) or all (AND) of the terms; each is quoted, so no term
    is read as query syntax."""
    return f" {operator} ".join(_quoted(term) for term in terms)


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def index_term(uuid_text: str) -> str:
    """A UUID as one term of an index: its hex digits (the tokenizer would split the dashed form
    into five, and five terms per id cost a query naming many ids five times as much)."""
    return uuid_text.replace("-", "")


def one_of(column: str, ids: list[str]) -> str:
    """An FTS5 query matching rows whose `column` holds the `index_term` of one of the ids. The
    tokenizer stems terms, so the SQL around such a query keeps the exact condition: the index
    only narrows."""
    return f"{column} : ({' OR '.join(_quoted(index_term(i)) for i in ids)})"


def narrowed(table: str, column: str, ids_sql: str, ids_params: tuple[Any, ...], words: str) -> tuple[str, tuple[Any, ...]]:
    """SQL that computes an FTS5 query, and its parameters: `words` (a `match_expression`) in
    `content`, within the rows whose `column` holds the term of an id `ids_sql` selects (as `id`).
    Of the two queries the caller's SQL makes equivalent, the cheaper: the words alone rank every
    match in the index; the words within the named ids cost per id. Counting the words' matches
    decides (no row is read: 37 ns a match, a 25th of ranking one); more than MAX_NAMED ids are
    never named; no id matches nothing. One statement with the caller's: one snapshot."""
    alone = "'content : (' || ? || ')'"
    sql = (
        f"(SELECT CASE WHEN count(*) = 0 THEN '{column} : \"none\"'"  # ids are hex: no id is the term `none`
        f" WHEN count(*) <= {MAX_NAMED} AND (SELECT count(*) FROM {table} WHERE {table} MATCH {alone}) > {NAMED_ID_COST} * count(*)"
        f" THEN '{column} : (' || group_concat('\"' || replace(id, '-', '') || '\"', ' OR ') || ') AND ' || {alone}"
        f" ELSE {alone} END FROM ({ids_sql}))"
    )
    return sql, (words, words, words, *ids_params)


async def search_messages(db: ReadConnection, session_id: str, terms: list[str], limit: int, *, exclude: str = "") -> list[Row]:
    """People's messages of one session matching any term, best first (BM25); snippets mark
    matches with [ ]. The assistant's own replies are left out: it never quotes itself (nor,
    through itself, someone whose words it quoted before)."""
    if not terms:
        return []
    words = f"{one_of('session_term', [session_id])} AND content : ({match_expression(terms)})"
    return await db.fetch_all(
        "SELECT m.message_id, m.session_id, m.author_id, m.content,"
        " snippet(message_search, 0, '[', ']', '…', 16) AS snippet, bm25(message_search, 1.0, 0.0) AS rank,"
        " (SELECT substr(COALESCE(x.edited_at, x.created_at), 1, 10) FROM messages x WHERE x.id = m.message_id) AS content_day"
        " FROM message_search m"
        " WHERE message_search MATCH ? AND m.session_id = ? AND m.message_id != ? AND m.author_id != 'assistant'"
        " ORDER BY rank LIMIT ?",
        (words, session_id, exclude, limit),
    )


async def search_visible_messages(db: ReadConnection, user_id: str, terms: list[str], limit: int) -> list[Row]:
    """Messages containing every term in the sessions the user is a member of, best first."""
    if not terms:
        return []
    match, params = narrowed(
        "message_search",
        "session_term",
        "SELECT session_id AS id FROM session_members WHERE user_id = ?",
        (user_id,),
        match_expression(terms, "AND"),
    )
    return await db.fetch_all(
        "SELECT m.message_id, m.session_id, m.author_id,"
        " snippet(message_search, 0, '[', ']', '…', 16) AS snippet, bm25(message_search, 1.0, 0.0) AS rank"
        " FROM message_search m JOIN session_members sm ON sm.session_id = m.session_id AND sm.user_id = ?"
        f" WHERE message_search MATCH {match} ORDER BY rank LIMIT ?",
        (user_id, *params, limit),
    )

"""The full-text index of documents (SQLite FTS5, BM25): the text of each document's latest
completed Markdown or text conversion, cut into passages so a hit points at a place in it.

The text is read from the conversion's output blob, which the `ConversionCompleted` event names
by its SHA-256: blobs are immutable and content-addressed, so the index is still rebuilt from the
event log alone (plus the files the log references).

`document_term` indexes the document's id as one term, as `session_term` does in the messages'
index: a search may name the documents it may read in the index query, and a document's passages
are found through the index when they are replaced or deleted (by the unindexed `document_id`,
each was a scan of every passage)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from domain.conversion import Conversion
from domain.document import Document
from domain.user import User
from projections.documents import _VISIBLE
from projections.projector import Projector, collect_handlers, handles
from projections.search import index_term, match_expression, narrowed, one_of
from projections.storage import ReadConnection, ReadTransaction, Row

INDEXED_TARGETS = ("text", "markdown")
PASSAGE_CHARS = 1000
INDEXED_CHARS = 2_000_000
"""Only the first 2 million characters of a document are indexed: indexing is one read-model
transaction, and a huge output would hold up every other projection meanwhile."""
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")

ReadText = Callable[[str, int], "str | None"]
"""A blob's text by its SHA-256, at most so many characters; None if the blob is gone."""


def passages(text: str, size: int = PASSAGE_CHARS) -> list[str]:
    """Paragraphs gathered into passages of about `size` characters (a longer paragraph is
    cut at spaces)."""
    result: list[str] = []
    current = ""
    for paragraph in (p.strip() for p in _PARAGRAPH_BREAK.split(text)):
        if len(paragraph) > size and current:
            result.append(current)
            current = ""
        while len(paragraph) > size:
            cut = paragraph.rfind(" ", 0, size)
            cut = cut if cut > size // 2 else size
            result.append(paragraph[:cut].strip())
            paragraph = paragraph[cut:].strip()
        if not paragraph:
            continue
        if current and len(current) + len(paragraph) + 2 > size:
            result.append(current)
            current = paragraph
        else:
            current = f"{current}\n\n{paragraph}" if current else paragraph
    if current:
        result.append(current)
    return result


@collect_handlers
class DocumentSearchProjector(Projector):
    name = "document_search"
    tables = ("document_passages", "document_search_conversions")
    schema = (
        """CREATE VIRTUAL TABLE IF NOT EXISTS document_passages USING fts5(
            content, document_term, document_id UNINDEXED, conversion_id UNINDEXED, passage UNINDEXED,
            tokenize='porter unicode61')""",
        """CREATE TABLE IF NOT EXISTS document_search_conversions (
            conversion_id TEXT PRIMARY KEY, document_id TEXT NOT NULL, target TEXT NOT NULL, owner_id TEXT NOT NULL)""",
    )

    def __init__(self, read_text: ReadText) -> None:
        self._read_text = read_text

    @handles(Conversion.ConversionRequested)
    def _requested(self, tx: ReadTransaction, e: Any, position: int) -> None:
        if e.target in INDEXED_TARGETS:
            tx.execute(
                "INSERT INTO document_search_conversions VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
                (str(e.originator_id), str(e.document_id), e.target, str(e.owner_id)),
            )

    @handles(Conversion.ConversionCompleted)
    def _completed(self, tx: ReadTransaction, e: Any, position: int) -> None:
        conversion_id = str(e.originator_id)
        row = tx.fetch_one("SELECT document_id FROM document_search_conversions WHERE conversion_id=?", (conversion_id,))
        if row is None:
            return
        text = self._read_text(e.output_sha256, INDEXED_CHARS)
        if text is None:
            return
        _delete_passages(tx, row["document_id"])
        for number, passage in enumerate(passages(text), start=1):
            tx.execute(
                "INSERT INTO document_passages (content, document_term, document_id, conversion_id, passage) VALUES (?,?,?,?,?)",
                (passage, index_term(row["document_id"]), row["document_id"], conversion_id, number),
            )

    @handles(Document.DocumentDeleted)
    def _deleted(self, tx: ReadTransaction, e: Any, position: int) -> None:
        document_id = str(e.originator_id)
        _delete_passages(tx, document_id)
        tx.execute("DELETE FROM document_search_conversions WHERE document_id=?", (document_id,))

    @handles(User.UserErased)
    def _owner_erased(self, tx: ReadTransaction, e: Any, position: int) -> None:
        owner = str(e.originator_id)
        for row in tx.fetch_all("SELECT DISTINCT document_id FROM document_search_conversions WHERE owner_id=?", (owner,)):
            _delete_passages(tx, row["document_id"])
        tx.execute("DELETE FROM document_search_conversions WHERE owner_id=?", (owner,))


def _delete_passages(tx: ReadTransaction, document_id: str) -> None:
    tx.execute(
        "DELETE FROM document_passages WHERE rowid IN"
        " (SELECT rowid FROM document_passages WHERE document_passages MATCH ? AND document_id = ?)",
        (one_of("document_term", [document_id]), document_id),
    )


_HIT = (
    "SELECT p.document_id, p.conversion_id, p.passage, d.filename, d.owner_id,"
    " snippet(document_passages, 0, '[', ']', '…', 16) AS snippet, bm25(document_passages, 1.0, 0.0) AS rank"
    " FROM document_passages p JOIN documents d ON d.id = p.document_id"
)


async def search_visible_documents(db: ReadConnection, user_id: str, terms: list[str], limit: int) -> list[Row]:
    """Passages of documents the user owns or may read through a session, best first."""
    if not terms:
        return []
    match, params = narrowed(
        "document_passages",
        "document_term",
        "SELECT id FROM documents WHERE owner_id = ? UNION SELECT ds.document_id FROM session_members sm"
        " JOIN document_sessions ds ON ds.session_id = sm.session_id WHERE sm.user_id = ?",
        (user_id, user_id),
        match_expression(terms, "AND"),
    )
    return await db.fetch_all(
        f"{_HIT} WHERE document_passages MATCH {match} AND {_VISIBLE} ORDER BY rank LIMIT ?", (*params, user_id, user_id, limit)
    )


async def search_session_documents(db: ReadConnection, session_id: str, terms: list[str], limit: int) -> list[Row]:
    """Passages of the documents attached to one session (what every member may read)."""
    if not terms:
        return []
    match, params = narrowed(
        "document_passages",
        "document_term",
        "SELECT document_id AS id FROM document_sessions WHERE session_id = ?",
        (session_id,),
        match_expression(terms),
    )
    return await db.fetch_all(
        f"{_HIT} JOIN document_sessions ds ON ds.document_id = p.document_id AND ds.session_id = ?"
        f" WHERE document_passages MATCH {match} ORDER BY rank LIMIT ?",
        (session_id, *params, limit),
    )

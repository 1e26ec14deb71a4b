"""Full-text search over what the user may read: messages of their sessions and documents they
own or that are attached to their sessions. Ranked by BM25, with highlighted snippets and links."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, get
from litestar.params import Parameter

from infrastructure.web.auth import Principal
from infrastructure.web.edge_types import AfterPosition
from infrastructure.web.rate_limits import searches
from infrastructure.web.read_your_writes import ProjectionProgress
from projections.document_search import search_visible_documents
from projections.search import search_terms, search_visible_messages
from projections.storage import ReadConnection

READ_MODELS = ("search", "document_search", "documents", "session_members")


class SearchHit(msgspec.Struct, omit_defaults=True):
    """`snippet` marks the matched words with [ ]; `link` is the API address of what matched."""

    kind: str
    snippet: str
    rank: float
    link: str
    session_id: str | None = None
    message_id: str | None = None
    document_id: str | None = None
    filename: str | None = None
    passage: int | None = None


class SearchResults(msgspec.Struct):
    query: str
    terms: list[str]
    hits: list[SearchHit]


def _message_hit(row: dict[str, Any]) -> SearchHit:
    return SearchHit(
        kind="message",
        snippet=row["snippet"],
        rank=row["rank"],
        session_id=row["session_id"],
        message_id=row["message_id"],
        link=f"/api/sessions/{row['session_id']}/messages/{row['message_id']}",
    )


def _document_hit(row: dict[str, Any]) -> SearchHit:
    return SearchHit(
        kind="document",
        snippet=row["snippet"],
        rank=row["rank"],
        document_id=row["document_id"],
        filename=row["filename"],
        passage=row["passage"],
        link=f"/api/documents/{row['document_id']}/conversions/{row['conversion_id']}/content#passage={row['passage']}",
    )


class SearchController(Controller):
    path = "/api/search"
    tags = ["search"]

    @get("/", guards=[searches])
    async def search(
        self,
        request: Request[Principal, Any, Any],
        db: ReadConnection,
        progress: ProjectionProgress,
        q: Annotated[str, Parameter(min_length=1, max_length=500)],
        kind: Literal["all", "messages", "documents"] = "all",
        limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
        after_position: AfterPosition = None,
    ) -> SearchResults:
        """Every word of `q` must occur (common words are ignored); best matches first."""
        await progress.wait(READ_MODELS, after_position)
        terms = search_terms(q)
        user_id = str(request.user.id)
        hits: list[SearchHit] = []
        if kind in ("all", "messages"):
            hits += [_message_hit(r) for r in await search_visible_messages(db, user_id, terms, limit)]
        if kind in ("all", "documents"):
            hits += [_document_hit(r) for r in await search_visible_documents(db, user_id, terms, limit)]
        hits.sort(key=lambda hit: hit.rank)
        return SearchResults(query=q, terms=terms, hits=hits[:limit])

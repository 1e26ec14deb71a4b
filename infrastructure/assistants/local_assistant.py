"""The `local` assistant provider: no network, deterministic, grounded in the conversation.
It searches the session's earlier messages and the documents attached to the session (FTS5,
BM25) and answers with the most relevant passages quoted and cited, or says plainly that it
found nothing. Every member of the session reads the reply, so it quotes nothing from outside
the session: not the asker's other sessions, not their unattached documents."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from application.assistant import ReplyRequest, ReplyUsage
from projections.document_search import search_session_documents
from projections.search import search_messages, search_terms
from projections.storage import ReadConnection

PASSAGES = 3
WORDS_PER_PIECE = 6


class LocalAssistant:
    name = "local"
    model = "fts5-bm25"

    def __init__(self, db: ReadConnection, pace_seconds: float = 0.0) -> None:
        self._db = db
        self._pace = pace_seconds

    async def answer(self, request: ReplyRequest, usage: ReplyUsage) -> str:
        terms = search_terms(request.question)
        session_id = str(request.session_id)
        hits = await search_messages(self._db, session_id, terms, PASSAGES, exclude=str(request.message_id))
        hits += await search_session_documents(self._db, session_id, terms, PASSAGES)
        hits = sorted(hits, key=lambda hit: hit["rank"])[:PASSAGES]
        usage.model = self.model
        usage.prompt_tokens = len(request.question.split())
        if not hits:
            subject = " ".join(terms) or request.question.strip()
            return f"I found nothing in this session about “{subject}”."
        lines = ["Here is what I found in this session:", ""]
        for number, hit in enumerate(hits, start=1):
            lines.append(f"> {hit['snippet']}")
            if "document_id" in hit:
                lines.append(f"[{number}] document {hit['document_id']} ({hit['filename']}), passage {hit['passage']}")
                usage.sources.append(
                    {"kind": "document", "document_id": hit["document_id"], "passage": str(hit["passage"]), "owner_id": hit["owner_id"]}
                )
            else:
                lines.append(f"[{number}] message {hit['message_id']}")
                usage.sources.append(
                    {
                        "kind": "message",
                        "session_id": hit["session_id"],
                        "message_id": hit["message_id"],
                        "author_id": hit["author_id"],
                        "content_day": hit["content_day"],
                    }
                )
            lines.append("")
        return "\n".join(lines).rstrip()

    async def reply(self, request: ReplyRequest, usage: ReplyUsage) -> AsyncIterator[str]:
        text = await self.answer(request, usage)
        words = text.split(" ")
        for start in range(0, len(words), WORDS_PER_PIECE):
            piece = " ".join(words[start : start + WORDS_PER_PIECE])
            yield piece if start + WORDS_PER_PIECE >= len(words) else piece + " "
            usage.completion_tokens += len(words[start : start + WORDS_PER_PIECE])
            if self._pace:
                await asyncio.sleep(self._pace)

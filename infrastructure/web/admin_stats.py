"""Counts an admin asks for first: events, users, sessions, messages, documents, storage used."""

from __future__ import annotations

import msgspec
from litestar import Controller, get

from infrastructure.web.auth import admin_only
from infrastructure.write_side import WriteSide
from projections.storage import ReadConnection

_COUNTS = (
    "SELECT (SELECT COUNT(*) FROM users) AS users, (SELECT COUNT(*) FROM sessions) AS sessions,"
    " (SELECT COUNT(*) FROM sessions WHERE archived) AS archived_sessions,"
    " (SELECT COUNT(*) FROM messages WHERE role != 'assistant') AS messages,"
    " (SELECT COUNT(*) FROM messages WHERE role = 'assistant') AS assistant_replies,"
    " (SELECT COUNT(*) FROM documents) AS documents, (SELECT COUNT(*) FROM conversions) AS conversions,"
    " (SELECT COALESCE(SUM(size), 0) FROM (SELECT MAX(size) AS size FROM documents GROUP BY sha256))"
    "   + (SELECT COALESCE(SUM(size), 0) FROM (SELECT MAX(output_size) AS size FROM conversions"
    "      WHERE output_sha256 IS NOT NULL GROUP BY output_sha256)) AS storage_bytes"
)


class Stats(msgspec.Struct):
    """`storage_bytes` counts each stored file once, however many documents share it."""

    events: int
    users: int
    sessions: int
    archived_sessions: int
    messages: int
    assistant_replies: int
    documents: int
    conversions: int
    storage_bytes: int


class AdminStatsController(Controller):
    path = "/api/admin/stats"
    tags = ["admin"]
    guards = [admin_only]

    @get("/")
    async def stats(self, db: ReadConnection, write: WriteSide) -> Stats:
        row = await db.fetch_one(_COUNTS)
        assert row is not None
        return Stats(events=write.runner.head(), **row)

"""The documents read model: each user's documents, the sessions they are attached to, their
conversions, and which blobs are still referenced (what `documents gc` may not remove)."""

from __future__ import annotations

from typing import Any

from domain.conversion import Conversion
from domain.document import Document
from domain.user import User
from projections.projector import Projector, collect_handlers, handles, iso
from projections.storage import ReadConnection, ReadTransaction, Row

_VISIBLE = (
    "(d.owner_id = ? OR EXISTS (SELECT 1 FROM document_sessions ds JOIN session_members sm"
    " ON sm.session_id = ds.session_id WHERE ds.document_id = d.id AND sm.user_id = ?))"
)
DOCUMENT_COLUMNS = "d.id, d.owner_id, d.filename, d.media_type, d.size, d.sha256, d.created_at, d.position"


@collect_handlers
class DocumentsProjector(Projector):
    name = "documents"
    tables = ("documents", "document_sessions", "conversions", "blob_references")
    schema = (
        """CREATE TABLE IF NOT EXISTS documents (
            id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, filename TEXT NOT NULL, media_type TEXT NOT NULL,
            size INTEGER NOT NULL, sha256 TEXT NOT NULL, created_at TEXT NOT NULL, position INTEGER NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS documents_by_owner ON documents(owner_id, position)",
        """CREATE TABLE IF NOT EXISTS document_sessions (
            document_id TEXT NOT NULL, session_id TEXT NOT NULL, attached_at TEXT NOT NULL,
            position INTEGER NOT NULL, PRIMARY KEY (document_id, session_id))""",
        "CREATE INDEX IF NOT EXISTS document_sessions_by_session ON document_sessions(session_id, position)",
        """CREATE TABLE IF NOT EXISTS conversions (
            id TEXT PRIMARY KEY, document_id TEXT NOT NULL, target TEXT NOT NULL, status TEXT NOT NULL,
            reason TEXT, detail TEXT, attempt INTEGER NOT NULL, created_at TEXT NOT NULL, started_at TEXT,
            completed_at TEXT, output_sha256 TEXT, output_size INTEGER, pages INTEGER, characters INTEGER,
            duration_ms INTEGER, position INTEGER NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS conversions_by_document ON conversions(document_id, position)",
        "CREATE INDEX IF NOT EXISTS conversions_by_status ON conversions(status)",
        """CREATE TABLE IF NOT EXISTS blob_references (holder_id TEXT PRIMARY KEY, sha256 TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS blob_references_by_sha256 ON blob_references(sha256)",
    )

    @handles(Document.DocumentUploaded)
    def _uploaded(self, tx: ReadTransaction, e: Any, position: int) -> None:
        document_id = str(e.originator_id)
        tx.execute(
            "INSERT INTO documents VALUES (?,?,?,?,?,?,?,?)",
            (document_id, str(e.owner_id), e.filename, e.media_type, e.size, e.sha256, iso(e.timestamp), position),
        )
        tx.execute("INSERT INTO blob_references VALUES (?,?)", (document_id, e.sha256))

    @handles(Document.DocumentAttached)
    def _attached(self, tx: ReadTransaction, e: Any, position: int) -> None:
        tx.execute(
            "INSERT INTO document_sessions VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
            (str(e.originator_id), str(e.session_id), iso(e.timestamp), position),
        )

    @handles(Document.DocumentDetached)
    def _detached(self, tx: ReadTransaction, e: Any, position: int) -> None:
        tx.execute("DELETE FROM document_sessions WHERE document_id=? AND session_id=?", (str(e.originator_id), str(e.session_id)))

    @handles(Document.DocumentDeleted)
    def _deleted(self, tx: ReadTransaction, e: Any, position: int) -> None:
        _forget_document(tx, str(e.originator_id))

    @handles(User.UserErased)
    def _owner_erased(self, tx: ReadTransaction, e: Any, position: int) -> None:
        """An erased user's documents go, and with them every reference to their bytes."""
        for row in tx.fetch_all("SELECT id FROM documents WHERE owner_id=?", (str(e.originator_id),)):
            _forget_document(tx, row["id"])

    @handles(Conversion.ConversionRequested)
    def _requested(self, tx: ReadTransaction, e: Any, position: int) -> None:
        tx.execute(
            "INSERT INTO conversions (id, document_id, target, status, attempt, created_at, position)"
            " SELECT ?,?,?,?,?,?,? WHERE EXISTS (SELECT 1 FROM documents WHERE id=?)",
            (str(e.originator_id), str(e.document_id), e.target, "pending", 1, iso(e.timestamp), position, str(e.document_id)),
        )

    @handles(Conversion.ConversionRetried)
    def _retried(self, tx: ReadTransaction, e: Any, position: int) -> None:
        tx.execute(
            "UPDATE conversions SET status='pending', reason=NULL, detail=NULL, started_at=NULL, completed_at=NULL,"
            " duration_ms=NULL, attempt=? WHERE id=?",
            (e.attempt, str(e.originator_id)),
        )

    @handles(Conversion.ConversionStarted)
    def _started(self, tx: ReadTransaction, e: Any, position: int) -> None:
        tx.execute("UPDATE conversions SET status='running', started_at=? WHERE id=?", (iso(e.timestamp), str(e.originator_id)))

    @handles(Conversion.ConversionCompleted)
    def _completed(self, tx: ReadTransaction, e: Any, position: int) -> None:
        conversion_id = str(e.originator_id)
        tx.execute(
            "UPDATE conversions SET status='completed', completed_at=?, output_sha256=?, output_size=?, pages=?,"
            " characters=?, duration_ms=? WHERE id=?",
            (iso(e.timestamp), e.output_sha256, e.output_size, e.pages, e.characters, e.duration_ms, conversion_id),
        )
        tx.execute(
            "INSERT INTO blob_references SELECT id, ? FROM conversions WHERE id=?"
            " ON CONFLICT (holder_id) DO UPDATE SET sha256=excluded.sha256",
            (e.output_sha256, conversion_id),
        )

    @handles(Conversion.ConversionFailed)
    def _failed(self, tx: ReadTransaction, e: Any, position: int) -> None:
        tx.execute(
            "UPDATE conversions SET status='failed', completed_at=?, reason=?, detail=?, duration_ms=? WHERE id=?",
            (iso(e.timestamp), e.reason, e.detail, e.duration_ms, str(e.originator_id)),
        )


def _forget_document(tx: ReadTransaction, document_id: str) -> None:
    tx.execute(
        "DELETE FROM blob_references WHERE holder_id=? OR holder_id IN (SELECT id FROM conversions WHERE document_id=?)",
        (document_id, document_id),
    )
    for table, column in (("conversions", "document_id"), ("document_sessions", "document_id"), ("documents", "id")):
        tx.execute(f"DELETE FROM {table} WHERE {column}=?", (document_id,))  # fixed names from the tuple above, never input


async def documents_of_owner(db: ReadConnection, owner_id: str, after: int, limit: int) -> list[Row]:
    return await db.fetch_all(
        f"SELECT {DOCUMENT_COLUMNS} FROM documents d WHERE d.owner_id=? AND d.position>? ORDER BY d.position LIMIT ?",
        (owner_id, after, limit),
    )


async def readable_document(db: ReadConnection, document_id: str, user_id: str) -> Row | None:
    """The document if the user owns it or is a member of a session it is attached to."""
    return await db.fetch_one(f"SELECT {DOCUMENT_COLUMNS} FROM documents d WHERE d.id=? AND {_VISIBLE}", (document_id, user_id, user_id))


async def documents_of_session(db: ReadConnection, session_id: str, after: int, limit: int) -> list[Row]:
    """The documents attached to a session, in the order they were attached, after the
    attachment at position `after` (`attached_position`, a page's cursor)."""
    return await db.fetch_all(
        f"SELECT {DOCUMENT_COLUMNS}, ds.attached_at, ds.position AS attached_position"
        " FROM document_sessions ds JOIN documents d ON d.id = ds.document_id"
        " WHERE ds.session_id=? AND ds.position>? ORDER BY ds.position LIMIT ?",
        (session_id, after, limit),
    )


async def conversions_of(db: ReadConnection, document_id: str) -> list[Row]:
    return await db.fetch_all("SELECT * FROM conversions WHERE document_id=? ORDER BY position", (document_id,))


async def conversion_of(db: ReadConnection, document_id: str, conversion_id: str) -> Row | None:
    return await db.fetch_one("SELECT * FROM conversions WHERE id=? AND document_id=?", (conversion_id, document_id))


def referenced(tx: Any, sha256: str) -> bool:
    return tx.fetch_one("SELECT 1 AS yes FROM blob_references WHERE sha256=? LIMIT 1", (sha256,)) is not None


async def referenced_blobs(db: ReadConnection) -> set[str]:
    return {row["sha256"] for row in await db.fetch_all("SELECT DISTINCT sha256 FROM blob_references")}


def failed_conversions(tx: Any) -> list[str]:
    return [row["id"] for row in tx.fetch_all("SELECT id FROM conversions WHERE status='failed' ORDER BY position")]


async def storage_used(db: ReadConnection, owner_id: str) -> int:
    """The sizes of the owner's documents and of their completed conversions' outputs."""
    row = await db.fetch_one(
        "SELECT (SELECT COALESCE(SUM(size), 0) FROM documents WHERE owner_id=?)"
        " + (SELECT COALESCE(SUM(c.output_size), 0) FROM documents d JOIN conversions c ON c.document_id = d.id"
        "    WHERE d.owner_id=? AND c.status='completed') AS n",
        (owner_id, owner_id),
    )
    return int(row["n"]) if row else 0

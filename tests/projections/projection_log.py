"""Helpers for the per-projector tests: `ChatLog` records real events by running real commands
through the command bus on a SQLite event store in tmp_path, and `Projected` fills a read store
of its own (a file in tmp_path) with one projector, through the real `ProjectionRunner`.

Each projector's module then checks events in, rows out, and shares three checks written here
once: replaying the log changes no row, a rebuild (reset, or a new file) gives the same rows,
and an erased person's fields read as erased once the read model is rebuilt."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import anyio

from application.accounts import RegisterUser
from application.chat import (
    AddMember,
    ArchiveSession,
    DeleteMessage,
    EditMessage,
    MarkRead,
    PostMessage,
    RemoveMember,
    StartSession,
    UpdateSession,
)
from application.documents import (
    CompleteConversion,
    FailConversion,
    RequestConversion,
    StartConversion,
    UploadDocument,
)
from application.erasure import erase_person
from infrastructure.bootstrap import WriteSide
from infrastructure.storage.read_store import AioSQLiteReadConnection, SQLiteReadStore
from infrastructure.workers.projection_runner import ProjectionRunner
from projections.projector import Projector


class ChatLog:
    """Runs commands as their actors would; each method returns the id it made (or the outcome)."""

    def __init__(self, side: WriteSide) -> None:
        self.side = side

    def run(self, command: Any, actor: Any = "test") -> Any:
        return self.side.bus.execute_now(command, str(actor))

    def user(self, email: str, name: str = "Ann") -> UUID:
        return self.run(RegisterUser(email, name, "hash")).value.id

    def session(self, owner: UUID, title: str = "Plans", **settings: Any) -> UUID:
        return self.run(StartSession(owner, title, **settings), owner).value.id

    def post(self, session: UUID, author: UUID, content: str) -> UUID:
        return self.run(PostMessage(session, author, content), author).value.message.id

    def edit(self, session: UUID, message: UUID, by: UUID, content: str) -> None:
        self.run(EditMessage(session, message, by, content), by)

    def delete(self, session: UUID, message: UUID, by: UUID) -> None:
        self.run(DeleteMessage(session, message, by), by)

    def add(self, session: UUID, by: UUID, user: UUID) -> None:
        self.run(AddMember(session, by, user), by)

    def remove(self, session: UUID, by: UUID, user: UUID) -> None:
        self.run(RemoveMember(session, by, user), by)

    def rename(self, session: UUID, by: UUID, title: str) -> None:
        self.run(UpdateSession(session, by, title=title), by)

    def archive(self, session: UUID, by: UUID) -> None:
        self.run(ArchiveSession(session, by), by)

    def mark_read(self, session: UUID, user: UUID, position: int) -> None:
        self.run(MarkRead(session, user, position), user)

    def blob(self, data: bytes) -> str:
        """Stores the bytes in the blob store; returns their SHA-256."""
        incoming = self.side.blobs.incoming()
        incoming.write(data)
        incoming.finish()
        self.side.blobs.place(incoming)
        return incoming.sha256

    def upload(self, owner: UUID, data: bytes, filename: str = "notes.txt", session: UUID | None = None) -> UUID:
        """Stores the bytes as a blob (as an upload does) and records the document."""
        command = UploadDocument(owner, filename, "text/plain", len(data), self.blob(data), session)
        return self.run(command, owner).value.id

    def request_conversion(self, document: UUID, by: UUID, target: str = "markdown") -> UUID:
        return self.run(RequestConversion(document, by, target), by).value.id

    def complete_conversion(self, conversion: UUID, text: str) -> str:
        """What the conversion worker records for a job that wrote `text`; returns its SHA-256."""
        sha256 = self.blob(text.encode())
        self.run(StartConversion(conversion), "conversion-worker")
        self.run(CompleteConversion(conversion, sha256, len(text.encode()), None, len(text), 12), "conversion-worker")
        return sha256

    def fail_conversion(self, conversion: UUID, reason: str = "corrupt_file") -> None:
        self.run(StartConversion(conversion), "conversion-worker")
        self.run(FailConversion(conversion, reason, "it broke", 5), "conversion-worker")

    def erase(self, user: UUID) -> None:
        """What `chronicle users erase` does before its rebuild: the key first, then the event."""
        erase_person(self.side.reader, self.side.keys, lambda command: self.side.bus.execute_now(command, "cli"), user)

    def head(self) -> int:
        return self.side.app.recorder.max_notification_id() or 0


class Projected:
    """One projector's read tables in a file of their own, filled from the log by the runner."""

    def __init__(self, side: WriteSide, projector: Projector, path: Path) -> None:
        self.side = side
        self.projector = projector
        self.store = SQLiteReadStore(path)
        self.runner = ProjectionRunner(side.app, self.store, [projector], batch_size=7)

    def catch_up(self) -> Projected:
        self.runner.catch_up()
        assert self.runner.failures == {}, self.runner.failures
        return self

    def rows(self, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        with self.store.transaction() as tx:
            return tx.fetch_all(sql, params)

    def dump(self) -> dict[str, list[tuple]]:
        return self.store.dump(self.projector.tables)

    def rebuild(self) -> Projected:
        """Drops the tables and applies the whole log again (what erasure and retention do)."""
        self.store.reset([self.projector])
        return self.catch_up()

    def close(self) -> None:
        self.store.close()


def assert_replay_changes_nothing(side: WriteSide, projected: Projected, tmp_path: Path) -> None:
    """Events offered again change nothing. A runner that read its positions before another
    runner on the same file (a rebuild racing the server, a restart) advanced them is offered
    events already applied; the positions it re-reads inside each write transaction make it
    skip them. (Projectors themselves are not idempotent: exactly once is the runner's job.)"""
    path = tmp_path / f"replay-{projected.projector.name}.sqlite3"
    late_store, early_store = SQLiteReadStore(path), SQLiteReadStore(path)
    late = ProjectionRunner(side.app, late_store, [projected.projector], batch_size=3)
    assert late.catch_up_once() > 0  # it now believes the projector is 3 events in
    early = ProjectionRunner(side.app, early_store, [projected.projector])
    early.catch_up()
    once = early_store.dump(projected.projector.tables)
    assert any(once.values()), "the scenario should have produced rows"
    late.catch_up()  # offered every event after the third again
    assert late.failures == {} and early_store.dump(projected.projector.tables) == once
    assert once == projected.catch_up().dump(), "the same rows as one runner alone"
    assert late.positions() == {projected.projector.name: side.app.recorder.max_notification_id()}
    late_store.close()
    early_store.close()


def assert_rebuild_gives_the_same_rows(side: WriteSide, projected: Projected, tmp_path: Path) -> None:
    """Resetting the tables and applying the log again, or building a new file from the log,
    gives exactly the rows the live projection has."""
    live = projected.dump()
    fresh = Projected(side, projected.projector, tmp_path / f"fresh-{projected.projector.name}.sqlite3").catch_up()
    assert fresh.dump() == live
    fresh.close()
    assert projected.rebuild().dump() == live


def search_hits(path: Path, query: Callable[..., Awaitable[list[Any]]], key: str, scope: Any, word: str) -> set[str]:
    """`key` of each hit of a search function, `query(db, str(scope), [word], 10)`, on the read store at `path`."""

    async def run() -> set[str]:
        db = await AioSQLiteReadConnection.open(path)
        try:
            return {row[key] for row in await query(db, str(scope), [word], 10)}
        finally:
            await db.close()

    return anyio.run(run)

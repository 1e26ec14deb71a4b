"""The narrow interface between projectors/queries and whatever stores the read tables.

Projectors and queries speak plain SQL with `?` placeholders and these two protocols;
a PostgreSQL implementation needs only to provide them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

Row = dict[str, Any]


@runtime_checkable
class ReadTransaction(Protocol):
    """One read-model write transaction: the projector's rows and its position commit together."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Runs in order with every other statement; it may be deferred until the next read."""

    def insert(self, sql: str, params: Sequence[Any]) -> None:
        """A plain INSERT that may be batched with the other rows of the same SQL, ahead of the
        inserts of other SQL queued since the last `execute` (never of an `execute`)."""

    def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...

    def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    def publish(self, channel: str, body: bytes) -> None:
        """Sends `body` to the channel's live subscribers once this transaction has committed."""

    def flush(self) -> None:
        """Sends every deferred statement now (errors surface here)."""

    def savepoint(self, name: str) -> None: ...

    def rollback_to(self, name: str) -> None:
        """Drops deferred statements and undoes everything since the savepoint."""

    def release(self, name: str) -> None: ...


@runtime_checkable
class ReadConnection(Protocol):
    """Asynchronous access for queries."""

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    async def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...


@runtime_checkable
class ReadStore(Protocol):
    """The projection runner's side: schema, positions, and write transactions."""

    def ensure_schema(self, projectors: Sequence[Any]) -> None: ...

    def transaction(self) -> Any:
        """A context manager yielding a ReadTransaction that also reads and sets positions."""

    def positions(self) -> dict[str, int]: ...

    def reset(self, projectors: Sequence[Any]) -> None:
        """Drops and recreates the projectors' tables and sets their positions to 0, atomically."""

    def close(self) -> None: ...

"""Which node of a cluster runs the background work (the chat engine, the conversion worker,
the retention job and the blob collection that follows it): the one holding a PostgreSQL
advisory lock (ADR-043).

The lock is taken with `pg_try_advisory_lock` on a connection of its own, kept open for as long
as the node leads: a session-level advisory lock lives exactly as long as its session, so a node
that dies (`kill -9`, a lost network) loses it as soon as PostgreSQL closes the session, and
another node's next attempt takes it. A node that does not lead tries again every `interval`
seconds. A leader checks its lock connection as often; when the check fails or does not answer
within `check_timeout` (the connection was terminated, the database is unreachable) it stops
leading at once, before it competes again (fencing: a node that may have lost the lock stops
acting as if it held it). The store's one-outcome rule stays the final guard: a reply or a
conversion has one outcome whichever node records it.

Without a database URL (SQLite, one node per data directory) the node always leads."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Literal

import anyio
import psycopg
import structlog

log = structlog.stdlib.get_logger(__name__)

LEADER_LOCK = 0x4348524C
"""The advisory lock's key ("CHRL"); the schema's creation uses another ("CHRC")."""
CONNECT_TIMEOUT = 2
"""Seconds to open the lock's connection; an attempt to lead may take this on top of a check."""


class Leadership:
    """Competes for the leader lock and calls `on_change(leading)` on every change of role,
    awaiting it before it looks again (so stopping the work is complete before a new attempt)."""

    def __init__(
        self,
        database_url: str | None,
        on_change: Callable[[bool], Awaitable[None]],
        *,
        node: str = "",
        interval: float = 0.5,
        check_timeout: float = 2.0,
    ) -> None:
        self._url = database_url
        self._on_change = on_change
        self._node = node
        self._interval = interval
        self._check_timeout = check_timeout
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._doomed: psycopg.Connection[tuple[object, ...]] | None = None
        """A connection given up after a check that did not answer: never used again."""
        self._guard = threading.Lock()
        self._threads = anyio.CapacityLimiter(1)
        """The checks' own: a server whose shared worker threads are all busy (sign-ins hashing
        passwords, say) must not look like a lost database, and make this node give up the lock."""
        self._unreachable = False
        self.leading = False
        self.changes = 0
        """How many times the role changed."""
        self.rounds = 0
        """How many times the lock was tried for or checked."""

    @property
    def role(self) -> Literal["leader", "follower"]:
        return "leader" if self.leading else "follower"

    async def run(self) -> None:
        """Until cancelled; the lock stays held until `close` (the owner stops its work first)."""
        if self._url is None:
            await self._become(True)
            await asyncio.Event().wait()
        while True:
            if self.leading:
                holds = await self._ask(self._still_held, self._check_timeout)
            else:
                holds = await self._ask(self._try_to_lead, self._check_timeout + CONNECT_TIMEOUT)
            self.rounds += 1
            if holds != self.leading:
                await self._become(holds)
            await asyncio.sleep(self._interval)

    def close(self) -> None:
        """Closes the lock's connection: the lock goes with it, and another node may lead."""
        self.leading = False
        self._drop()

    async def _become(self, leading: bool) -> None:
        self.leading = leading
        self.changes += 1
        log.info("role changed", role=self.role, node=self._node, lock=LEADER_LOCK)
        await self._on_change(leading)

    async def _ask(self, question: Callable[[], bool], timeout: float) -> bool:
        """The answer of `question` (run in a worker thread), or False when it takes longer than
        `timeout`: the connection it was using is then given up, and closed once the thread lets
        go of it; no later attempt uses it, even if the slow answer was a yes."""
        with anyio.move_on_after(timeout):
            return await anyio.to_thread.run_sync(question, abandon_on_cancel=True, limiter=self._threads)
        log.warning("the leader lock's connection did not answer", node=self._node, seconds=timeout)
        doomed = self._doomed = self._conn
        threading.Thread(target=self._drop, args=(doomed,), name="leader-lock-close", daemon=True).start()
        return False

    def _try_to_lead(self) -> bool:
        with self._guard:
            self._forget_doomed()
            try:
                if self._conn is None or self._conn.closed or self._conn.broken:
                    self._conn = self._connect()
                row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,)).fetchone()
            except psycopg.Error as error:
                self._lost(error)
                return False
            self._reached()
            return bool(row and row[0])

    def _still_held(self) -> bool:
        """The lock lives as long as its session: the session answering is the lock being held."""
        with self._guard:
            self._forget_doomed()
            try:
                if self._conn is None or self._conn.closed or self._conn.broken:
                    return False
                self._conn.execute("SELECT 1")
            except psycopg.Error as error:
                self._lost(error)
                return False
            return True

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        """Keepalives and a user timeout, so that a peer gone silent is noticed in seconds."""
        assert self._url is not None
        return psycopg.connect(
            self._url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT,
            application_name="chronicle-leader-lock",
            keepalives=1,
            keepalives_idle=2,
            keepalives_interval=1,
            keepalives_count=2,
            tcp_user_timeout=3000,
        )

    def _lost(self, error: psycopg.Error) -> None:
        """Logged once per outage, not on every attempt."""
        if not self._unreachable:
            log.warning("the leader lock's connection failed", node=self._node, error=str(error).strip()[:200])
        self._unreachable = True
        self._close()

    def _reached(self) -> None:
        if self._unreachable:
            log.info("the leader lock's connection is back", node=self._node)
        self._unreachable = False

    def _drop(self, doomed: psycopg.Connection[tuple[object, ...]] | None = None) -> None:
        """Closes `doomed` (the connection given up), or the current one when none is named."""
        with self._guard:
            if doomed is None or doomed is self._conn:
                self._close()
            else:
                _close_quietly(doomed)

    def _forget_doomed(self) -> None:
        """Under the guard: a connection given up is closed before anything else uses it (the
        slow answer that made it doomed may have taken the lock on it meanwhile)."""
        if self._doomed is not None and self._doomed is self._conn:
            self._close()
        self._doomed = None

    def _close(self) -> None:
        if self._conn is not None:
            _close_quietly(self._conn)
            self._conn = None


def _close_quietly(connection: psycopg.Connection[tuple[object, ...]]) -> None:
    try:
        connection.close()
    except psycopg.Error:
        pass

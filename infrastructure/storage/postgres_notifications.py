"""Commits to the shared PostgreSQL log, heard by every node: a dedicated connection that
`LISTEN`s on `chronicle_log` (sent by `ChainedPostgresRecorder` inside each inserting
transaction, delivered at commit in commit order) and wakes this node's projection runner.

A notification only says "read the log now": the runner reads what to apply from the log, from
its own positions, and still polls (every 0.25 s) when nothing wakes it. So a notification
that is lost (the connection dropped, the node was starting) delays a frame by at most one
polling interval and never loses it. After every (re)connection the runner is woken once, for
whatever was committed while nobody listened (ADR-042)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg

from infrastructure.storage.postgres_log import LOG_CHANNEL

log = logging.getLogger(__name__)

KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}
"""TCP keepalives on listening connections: a peer that vanished without closing is noticed in
about 11 s, and the listener reconnects."""


def parse_log_notification(payload: str) -> tuple[int, float | None]:
    """`"<position> <epoch seconds on the database's clock>"`; anything else wakes with position 0."""
    position, _, at = payload.partition(" ")
    try:
        return int(position), (float(at) if at else None)
    except ValueError:
        return 0, None


class LogNotifications:
    """Listens on `chronicle_log` in a thread of its own, reconnecting by itself."""

    POLL_SECONDS = 0.5
    """How often the listening loop looks up from the socket to check whether to stop."""

    def __init__(self, database_url: str, on_commit: Callable[[int, float | None], None], on_connect: Callable[[], None]) -> None:
        """`on_commit(position, committed_at)` per notification (`committed_at`: the database's
        clock as seconds since the epoch); `on_connect()` after each (re)connection."""
        self._url = database_url
        self._on_commit = on_commit
        self._on_connect = on_connect
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="log-notifications", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(self.POLL_SECONDS * 4)
            self._thread = None

    def _run(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                with psycopg.connect(
                    self._url, autocommit=True, connect_timeout=5, application_name="chronicle log listener", **KEEPALIVES
                ) as conn:
                    conn.execute(f"LISTEN {LOG_CHANNEL}")
                    self.connected.set()
                    if backoff > 0.1:
                        log.info("listening to the shared log's commits again")
                    backoff = 0.1
                    self._on_connect()
                    while not self._stopping.is_set():
                        for notification in conn.notifies(timeout=self.POLL_SECONDS):
                            self._on_commit(*parse_log_notification(notification.payload))
            except psycopg.Error as error:
                self.connected.clear()
                log.warning("lost the shared log's commit notifications (%s); polling until reconnected in %.1fs", error, backoff)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        self.connected.clear()


def monotonic_of(committed_at: float | None) -> float:
    """A commit time on the database's wall clock as a `time.monotonic()` of this process (never
    in the future: clocks of different hosts may disagree a little)."""
    now = time.monotonic()
    return now if committed_at is None else now - max(0.0, time.time() - committed_at)

"""The server's projection runner, in a process of its own.

In the server's process the runner's thread shared one interpreter lock with the event loop and
the command bus: its CPU time came out of the HTTP path, and each of its SQLite calls gave the
lock away and waited up to a switch interval (5 ms) to get it back, so under load the read models
trailed commits by 20–200 ms. In a child process it has its own interpreter and, on a 2-core
machine, mostly its own core.

The child runs an ordinary `ProjectionRunner` over its own connections. The bus's commits reach
it as (position, commit time) messages; it sends back, per batch, the positions it reached, the
frames to publish, how long each commit took to reach the read models, and its last error;
failed projectors are read from the read store, where the child records them. On PostgreSQL
the child also hears every node's commits (`LOG_CHANNEL` notifications, ADR-042); the lag is
then measured from those, so the bus's messages only wake it.
`ProjectionProcess` offers the parent the runner's interface (`projectors`, `head`, `positions`,
`wake`, `failures`, `error`, the `on_*` callbacks) and hands what arrives to the event loop.
If the child dies it is started again; it resumes from the positions in the read store, so
nothing is applied twice or skipped."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing
import os
import signal
import struct
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from application.chronicle import Chronicle
from infrastructure.settings import Settings
from infrastructure.storage.read_store import SQLiteReadStore
from infrastructure.workers.projection_runner import ProjectionFailure
from projections.projector import Projector

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_WAKE = struct.Struct("qd")
"""A wake-up, parent to child: the commit's last position and its `time.monotonic()`. Records
are 16 bytes, so each `write` to the pipe is atomic (at most PIPE_BUF)."""
_STOP = -1
RESTART_SECONDS = 1.0


class ProjectionProcess:
    def __init__(
        self,
        settings: Settings,
        app: Chronicle,
        read_store: SQLiteReadStore,
        projectors: list[Projector],
        *,
        on_progress: Callable[[dict[str, int]], None] = lambda positions: None,
        on_publish: Callable[[list[tuple[str, bytes]]], None] = lambda published: None,
        on_lag: Callable[[float], None] = lambda seconds: None,
        on_restart: Callable[[], None] = lambda: None,
    ) -> None:
        """The hooks are called on the event loop that called `start`: `on_progress` with the
        positions a batch reached, `on_publish` with its frames, `on_lag` with each commit's
        lag, `on_restart` when the child was started again."""
        self._settings = settings
        self._app = app
        self._store = read_store
        self.projectors = projectors
        self.error: str | None = None
        self.on_progress = on_progress
        self.on_publish = on_publish
        self.on_lag = on_lag
        self.on_restart = on_restart
        self._wakes: Connection | None = None
        self._wakes_lock = threading.Lock()
        """Held while writing to or closing the wake-up pipe: a write never lands on a closed
        (and perhaps reused) descriptor."""
        self._connection: Connection | None = None
        self._process: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False

    @property
    def failures(self) -> dict[str, ProjectionFailure]:
        """Read from the read store's `projection_failures`, where the child records them (and a
        rebuild clears them) in the same transactions as positions."""
        names = {p.name for p in self.projectors}
        return {name: ProjectionFailure(position, error) for name, (position, error) in self._store.failures().items() if name in names}

    def head(self) -> int:
        return self._app.recorder.max_notification_id() or 0

    def positions(self) -> dict[str, int]:
        known = self._store.positions()
        return {p.name: known.get(p.name, 0) for p in self.projectors}

    def wake(self, position: int = 0) -> None:
        """Called by the command bus after each commit (from its thread), and after rebuilds.
        Never blocks: the write end of the wake-up pipe is non-blocking, so a child that is
        starting, restarting or behind cannot hold up commits. A wake-up that finds the pipe
        full is dropped; the child reads the log from its positions anyway (only that lag
        sample is lost)."""
        with self._wakes_lock:
            if self._wakes is None:
                return
            try:
                os.write(self._wakes.fileno(), _WAKE.pack(position, time.monotonic()))
            except OSError:
                pass  # full (BlockingIOError), or the child is gone and is being started again

    def start(self) -> None:
        """Starts the child; what it sends is handled on the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._spawn()

    def _spawn(self) -> None:
        context = multiprocessing.get_context("spawn")
        reports, child_reports = context.Pipe(duplex=False)
        child_wakes, wakes = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_child_main,
            args=(self._settings, child_reports, child_wakes),
            name="chronicle-projections",
            daemon=True,
        )
        self._process.start()
        child_reports.close()
        child_wakes.close()
        os.set_blocking(wakes.fileno(), False)
        with self._wakes_lock:
            self._connection, self._wakes = reports, wakes
        threading.Thread(target=self._listen, args=(reports,), name="projection-reports", daemon=True).start()

    def _listen(self, connection: Connection) -> None:
        """Reads the child's reports in a thread (a report may be megabytes of frames) and
        hands each to the event loop."""
        assert self._loop is not None
        try:
            while True:
                report = connection.recv()
                self._loop.call_soon_threadsafe(self._handle, report)
        except (EOFError, OSError):
            pass
        except RuntimeError:
            return  # the event loop is closed: the server has stopped
        try:
            self._loop.call_soon_threadsafe(self._lost, connection)
        except RuntimeError:
            pass

    def _handle(self, report: tuple[Any, ...]) -> None:
        kind, *body = report
        *details, self.error = body
        advanced, published, lags = details if kind == "batch" else ({}, [], [])
        if published:
            self.on_publish(published)
        if advanced:
            self.on_progress(advanced)
        for seconds in lags:
            self.on_lag(seconds)

    def _lost(self, connection: Connection) -> None:
        """The child is gone. Frames of a batch it committed but had not yet reported never
        reach live subscribers this way: `on_restart` has the streams replay from their
        position (the frames are in the feed tables)."""
        assert self._loop is not None
        if self._connection is connection:
            self._connection = None
            self._close_wakes()
        if self._stopping:
            return
        self._process.join(0)
        self.error = "the projection process exited; starting it again"
        log.error("the projection process exited with %s; starting it again", self._process.exitcode)
        self.on_restart()
        self._loop.call_later(RESTART_SECONDS, self._restart)

    def _restart(self) -> None:
        if not self._stopping:
            self._process.join(0)
            self._spawn()
            self.on_restart()  # and once more for what the new child reports as it catches up

    def _close_wakes(self) -> None:
        with self._wakes_lock:
            if self._wakes is not None:
                self._wakes.close()
                self._wakes = None

    def stop(self) -> None:
        """Asks the child to finish its batch and exit; kills it after 10 s."""
        self._stopping = True
        connection, self._connection = self._connection, None
        with self._wakes_lock:
            if self._wakes is not None:
                try:
                    os.write(self._wakes.fileno(), _WAKE.pack(_STOP, 0.0))
                except OSError:
                    pass  # the pipe is full or gone: the join below decides
        if self._process is not None:
            self._process.join(10)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
        self._close_wakes()
        if connection is not None:
            connection.close()


def _child_main(settings: Settings, connection: Connection, wakes: Connection) -> None:
    """The child: an ordinary runner, woken through `wakes`, reporting over `connection`."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # dies with the server
    except (OSError, AttributeError):
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    from infrastructure.bootstrap import projection_child
    from infrastructure.garbage_collection import tune_for_a_long_run
    from infrastructure.structured_logs import configure_logging
    from infrastructure.tracing import install_tracing

    configure_logging(settings.log_format, settings.log_level)  # a spawned interpreter starts unconfigured
    tracing = install_tracing(settings, "projections")
    send_lock = threading.Lock()
    published: list[tuple[str, bytes]] = []
    lags: list[float] = []
    reported: dict[str, str | None] = {"error": None}

    def send(kind: str, *body: Any, error: str | None) -> None:
        with send_lock:
            reported["error"] = error
            connection.send((kind, *body, error))

    def lagged(seconds: float) -> None:
        with send_lock:
            lags.append(seconds)

    def progressed(advanced: dict[str, int]) -> None:
        """A batch committed: whatever failed before is over (the runner clears `error` next)."""
        with send_lock:
            frames, samples = published[:], lags[:]
            published.clear()
            lags.clear()
        send("batch", advanced, frames, samples, error=None)

    runner, close = projection_child(settings, on_progress=progressed, on_publish=published.extend, on_lag=lagged)
    tune_for_a_long_run()
    on_postgres = settings.on_postgres
    signal.signal(signal.SIGTERM, lambda number, frame: runner.stop_soon())

    def listen() -> None:
        """Until the parent says stop or goes away (end of file)."""
        pending = b""
        try:
            while chunk := os.read(wakes.fileno(), _WAKE.size * 1024):
                pending += chunk
                whole = len(pending) - len(pending) % _WAKE.size
                for position, committed_at in _WAKE.iter_unpack(pending[:whole]):
                    if position == _STOP:
                        return
                    if on_postgres:
                        runner.wake()  # the lag is measured from the log's own notification, which every node hears
                    else:
                        runner.wake(position, committed_at)
                pending = pending[whole:]
        except OSError:
            pass
        finally:
            runner.stop_soon()

    def watch_health() -> None:
        """A batch that failed as a whole sets an error that no batch report carries: it
        reaches the parent within half a second."""
        while not runner.stopping:
            time.sleep(0.5)
            if runner.error is not None and runner.error != reported["error"]:
                try:
                    send("health", error=runner.error)
                except OSError:
                    return

    threading.Thread(target=listen, name="projection-wakes", daemon=True).start()
    threading.Thread(target=watch_health, name="projection-health", daemon=True).start()
    try:
        runner.run()
    finally:
        close()
        if tracing is not None:
            tracing.shutdown()

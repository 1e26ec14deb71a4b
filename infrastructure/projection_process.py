"""The server's projection runner, in a process of its own.

In the server's process the runner's thread shared one interpreter lock with the event loop and
the command bus: its CPU time came out of the HTTP path, and each of its SQLite calls gave the
lock away and waited up to a switch interval (5 ms) to get it back, so under load the read models
trailed commits by 20–200 ms. In a child process it has its own interpreter and, on a 2-core
machine, mostly its own core.

The child runs an ordinary `ProjectionRunner` over its own connections. The bus's commits reach
it as (position, commit time) messages; it sends back, per batch, the positions it reached, the
frames to publish, how long each commit took to reach the read models, and its last error;
failed projectors are read from the read store, where the child records them. `ProjectionProcess` offers the parent the runner's interface (`projectors`, `head`,
`positions`, `wake`, `failures`, `error`, the `on_*` callbacks) and hands what arrives to the
event loop. If the child dies it is started again; it resumes from the positions in the read
store, so nothing is applied twice or skipped."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from application.chronicle import Chronicle
from infrastructure.projection_runner import ProjectionFailure
from infrastructure.read_store import SQLiteReadStore
from infrastructure.settings import Settings
from projections.projector import Projector

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_STOP = "stop"
RESTART_SECONDS = 1.0


class ProjectionProcess:
    def __init__(self, settings: Settings, app: Chronicle, read_store: SQLiteReadStore, projectors: list[Projector]) -> None:
        self._settings = settings
        self._app = app
        self._store = read_store
        self.projectors = projectors
        self.error: str | None = None
        self.on_progress: Callable[[dict[str, int]], None] = lambda positions: None
        self.on_publish: Callable[[list[tuple[str, bytes]]], None] = lambda published: None
        self.on_lag: Callable[[float], None] = lambda seconds: None
        self._send_lock = threading.Lock()
        self._connection: Connection | None = None
        self._process: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False

    @property
    def failures(self) -> dict[str, ProjectionFailure]:
        """Read from the read store's `projection_failures`, where the child records them (and a
        rebuild clears them) in the same transactions as positions."""
        return {name: ProjectionFailure(position, error) for name, (position, error) in self._store.failures().items()}

    def head(self) -> int:
        return self._app.recorder.max_notification_id() or 0

    def positions(self) -> dict[str, int]:
        known = self._store.positions()
        return {p.name: known.get(p.name, 0) for p in self.projectors}

    def wake(self, position: int = 0) -> None:
        """Called by the command bus after each commit (from its thread), and after rebuilds."""
        connection = self._connection
        if connection is None:
            return
        try:
            with self._send_lock:
                connection.send((position, time.monotonic()))
        except (OSError, ValueError):
            pass  # the child is gone; it is being started again and reads the log from its positions

    def start(self) -> None:
        """Starts the child; what it sends is handled on the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._spawn()

    def _spawn(self) -> None:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self._process = context.Process(target=_child_main, args=(self._settings, child), name="chronicle-projections", daemon=True)
        self._process.start()
        child.close()
        self._connection = parent
        threading.Thread(target=self._listen, args=(parent,), name="projection-reports", daemon=True).start()

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
        if kind == "batch":
            advanced, published, lags, self.error = body
        else:
            advanced, published, lags = {}, [], []
            (self.error,) = body
        if published:
            self.on_publish(published)
        if advanced:
            self.on_progress(advanced)
        for seconds in lags:
            self.on_lag(seconds)

    def _lost(self, connection: Connection) -> None:
        assert self._loop is not None
        connection.close()
        if self._connection is connection:
            self._connection = None
        if self._stopping:
            return
        self.error = "the projection process exited; starting it again"
        log.error("the projection process exited with %s; starting it again", self._process.exitcode)
        self._loop.call_later(RESTART_SECONDS, self._restart)

    def _restart(self) -> None:
        if not self._stopping:
            self._process.join(0)
            self._spawn()

    def stop(self) -> None:
        self._stopping = True
        connection = self._connection
        if connection is not None:
            try:
                with self._send_lock:
                    connection.send(_STOP)
            except (OSError, ValueError):
                pass
        if self._process is not None:
            self._process.join(10)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
        if connection is not None:
            connection.close()
        self._connection = None


def _child_main(settings: Settings, connection: Connection) -> None:
    """The child: an ordinary runner, reporting to the parent over `connection`."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # dies with the server
    except (OSError, AttributeError):
        pass
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, signal.SIG_IGN)  # the server stops it through the pipe, or takes it along
    from infrastructure.bootstrap import bootstrap

    write = bootstrap(settings)
    runner = write.runner
    send_lock = threading.Lock()
    pending: dict[str, Any] = {"published": [], "lags": []}

    def send(message: Any) -> None:
        with send_lock:
            connection.send(message)

    def health() -> str | None:
        return runner.error

    runner.on_publish = pending["published"].extend
    runner.on_lag = pending["lags"].append

    def progressed(advanced: dict[str, int]) -> None:
        published, lags = pending["published"][:], pending["lags"][:]
        pending["published"].clear()
        pending["lags"].clear()
        send(("batch", advanced, published, lags, health()))

    runner.on_progress = progressed

    def listen() -> None:
        try:
            while True:
                message = connection.recv()
                if message == _STOP:
                    break
                runner.wake(*message)
        except (EOFError, OSError):
            pass
        runner.stop_soon()

    def watch_health() -> None:
        """An error that no batch carries (a batch that failed as a whole, or its recovery)
        reaches the parent within half a second."""
        reported = health()
        while not runner.stopping:
            time.sleep(0.5)
            now = health()
            if now != reported:
                try:
                    send(("health", now))
                except OSError:
                    return
                reported = now

    threading.Thread(target=listen, name="projection-wakes", daemon=True).start()
    threading.Thread(target=watch_health, name="projection-health", daemon=True).start()
    try:
        runner.run()
    finally:
        write.read_store.close()
        write.reader.close()
        write.app.close()

"""Runs one conversion in its own process, forked from a forkserver that has the converters
already imported (a job starts in milliseconds, not the second an import takes). The process
gets an address-space limit (the memory guard), a lower CPU priority than the server (so on a
busy machine requests are served first and conversions take what is left), and is killed when it
runs past its timeout, so a hostile or huge file costs one process, never the server's memory,
event loop or latency."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import resource
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

_PR_SET_PDEATHSIG = 1


class JobsStopped(Exception):
    """The server is shutting down: no new job starts."""


@dataclass(frozen=True)
class JobLimits:
    timeout_seconds: float = 120.0
    memory_bytes: int = 2 * 1024**3
    max_unpacked_bytes: int = 512 * 1024**2
    niceness: int = 10


@dataclass(frozen=True)
class JobOutcome:
    """Either `sha256` etc. of the output written to the job's output path, or a failure
    `reason` with its `detail`."""

    duration_ms: int
    sha256: str | None = None
    size: int = 0
    pages: int | None = None
    characters: int = 0
    reason: str | None = None
    detail: str = ""


class ConversionJobs:
    """The job processes of one server: started with `run`, all killed by `stop_all` (on
    shutdown), including one whose process was still being started, so that nothing converts
    unsupervised after the server has gone."""

    def __init__(self, limits: JobLimits) -> None:
        self.limits = limits
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(["infrastructure.documents.converters"])
        self._running: set[multiprocessing.process.BaseProcess] = set()
        self._guard = threading.Lock()
        self._starting = 0
        self._closing = False

    def reopen(self) -> None:
        """Accepts jobs again after `stop_all` (a node that leads again)."""
        with self._guard:
            self._closing = False

    def stop_all(self, wait_seconds: float = 5.0) -> int:
        with self._guard:
            self._closing = True
        deadline = time.monotonic() + wait_seconds
        while self._starting and time.monotonic() < deadline:
            time.sleep(0.01)
        killed = 0
        with self._guard:
            for process in list(self._running):
                if process.is_alive():
                    process.kill()
                    killed += 1
        return killed

    def run(self, source: Path, media_type: str, target: str, output: Path) -> JobOutcome:
        """Blocks until the job has finished, failed, or been killed at its timeout."""
        limits = self.limits
        started = time.perf_counter()
        receiving, sending = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_job,
            args=(str(source), media_type, target, str(output), limits, sending),
            daemon=True,
            name="chronicle-conversion",
        )
        with self._guard:
            if self._closing:
                raise JobsStopped()
            self._starting += 1
        try:
            process.start()
        finally:
            with self._guard:
                self._starting -= 1
                self._running.add(process)
                if self._closing:
                    process.kill()
        sending.close()
        try:
            if receiving.poll(limits.timeout_seconds):
                try:
                    message = receiving.recv()
                except EOFError:
                    message = None
            else:
                message = ("failed", "timeout", f"the conversion ran past its timeout of {limits.timeout_seconds:g} s")
        finally:
            receiving.close()
            if process.is_alive():
                process.kill()
            process.join()
            self._running.discard(process)
        return _outcome(message, process.exitcode, int((time.perf_counter() - started) * 1000))


def _outcome(message: tuple | None, exitcode: int | None, elapsed: int) -> JobOutcome:
    if message is None:
        if exitcode == -signal.SIGXCPU:
            return JobOutcome(elapsed, reason="timeout", detail="the conversion used up its CPU time")
        if exitcode == -signal.SIGKILL:
            return JobOutcome(elapsed, reason="too_large", detail="the converter process was killed, most likely for its memory use")
        return JobOutcome(elapsed, reason="corrupt_file", detail=f"the converter process crashed (exit code {exitcode})")
    if message[0] == "ok":
        _, sha256, size, pages, characters = message
        return JobOutcome(elapsed, sha256=sha256, size=size, pages=pages, characters=characters)
    return JobOutcome(elapsed, reason=message[1], detail=message[2])


def _job(source: str, media_type: str, target: str, output: str, limits: JobLimits, result: Connection) -> None:
    from infrastructure.documents.converters import ConversionFailure, convert

    _die_with_parent()
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    cpu_seconds = int(limits.timeout_seconds) + 5  # a backstop should the server vanish without killing it
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    os.nice(limits.niceness)
    try:
        done = convert(Path(source), media_type, target, Path(output), max_unpacked_bytes=limits.max_unpacked_bytes)
        message: tuple = ("ok", done.sha256, done.size, done.pages, done.characters)
    except ConversionFailure as failure:
        message = ("failed", failure.reason, failure.detail)
    except MemoryError:
        message = ("failed", "too_large", f"the conversion needed more than {limits.memory_bytes // 1024**2} MiB of memory")
    except FileNotFoundError:
        message = ("failed", "document_deleted", "the document's content is gone")
    except OSError as error:  # its message would name server paths
        message = ("failed", "corrupt_file", f"{type(error).__name__}: {error.strerror}")
    except Exception as error:  # noqa: BLE001 - reported as the file's fault, with what went wrong
        message = ("failed", "corrupt_file", f"{type(error).__name__}: {error}"[:300])
    try:
        result.send(message)
        result.close()
    except (BrokenPipeError, OSError):
        pass  # the server stopped waiting (shut down or timed out): nobody to tell


def _die_with_parent() -> None:
    """The job's parent is the forkserver, which exits with the server: the job goes with it."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the CPU limit is the backstop

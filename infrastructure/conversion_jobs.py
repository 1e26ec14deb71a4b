"""Runs one conversion in its own process, forked from a forkserver that has the converters
already imported (a job starts in milliseconds, not the second an import takes). The process
gets an address-space limit (the memory guard), a lower CPU priority than the server (so on a
busy machine requests are served first and conversions take what is left), and is killed when it
runs past its timeout, so a hostile or huge file costs one process, never the server's memory,
event loop or latency."""

from __future__ import annotations

import multiprocessing
import os
import resource
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(["infrastructure.converters"])


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


def run_job(source: Path, media_type: str, target: str, output: Path, limits: JobLimits) -> JobOutcome:
    """Blocks until the job has finished, failed, or been killed at its timeout."""
    started = time.perf_counter()
    receiving, sending = _context.Pipe(duplex=False)
    process = _context.Process(
        target=_job, args=(str(source), media_type, target, str(output), limits, sending), daemon=True,
        name="chronicle-conversion",
    )
    process.start()
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
    elapsed = int((time.perf_counter() - started) * 1000)
    if message is None:
        return JobOutcome(elapsed, reason="too_large",
                          detail=f"the converter process died (exit code {process.exitcode}), most likely out of memory")
    if message[0] == "ok":
        _, sha256, size, pages, characters = message
        return JobOutcome(elapsed, sha256=sha256, size=size, pages=pages, characters=characters)
    return JobOutcome(elapsed, reason=message[1], detail=message[2])


def _job(source: str, media_type: str, target: str, output: str, limits: JobLimits, result: Connection) -> None:
    from infrastructure.converters import ConversionFailure, convert

    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    os.nice(limits.niceness)
    try:
        done = convert(Path(source), media_type, target, Path(output), max_unpacked_bytes=limits.max_unpacked_bytes)
        message: tuple = ("ok", done.sha256, done.size, done.pages, done.characters)
    except ConversionFailure as failure:
        message = ("failed", failure.reason, failure.detail)
    except MemoryError:
        message = ("failed", "too_large", f"the conversion needed more than {limits.memory_bytes // 1024**2} MiB of memory")
    except Exception as error:  # noqa: BLE001 - reported as the file's fault, with what went wrong
        message = ("failed", "corrupt_file", f"{type(error).__name__}: {error}"[:300])
    result.send(message)
    result.close()

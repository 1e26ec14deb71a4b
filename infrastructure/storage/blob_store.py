"""Content-addressed file storage: every blob lives at `blobs/ab/cd/<sha256>` under the data
directory, so identical content is stored once. A blob arrives as an `Incoming` temporary file
(hashed while written), and is placed (fsynced, then linked into its address) only when complete.

Placing a blob and recording the event that references it happen under `lock()`, and so does
removing unreferenced blobs: a collector that takes the lock and has caught up with the log
sees every reference, so it never removes a blob that an event is about to reference."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import re
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

_SHA256 = re.compile(r"[0-9a-f]{64}")


class Incoming:
    """A blob being received: written to a temporary file, hashed and counted as it goes."""

    def __init__(self, directory: Path) -> None:
        fd, name = tempfile.mkstemp(dir=directory, prefix="incoming-")
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def finish(self) -> None:
        """Makes the bytes durable before the blob may be referenced."""
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def discard(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._incoming = root / "incoming"
        self._incoming.mkdir(parents=True, exist_ok=True)
        self._local: asyncio.Lock | None = None

    def path(self, sha256: str) -> Path:
        if not _SHA256.fullmatch(sha256):
            raise ValueError("not a SHA-256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def read_text(self, sha256: str, max_chars: int = -1) -> str | None:
        """The blob as text (UTF-8, undecodable bytes replaced), its first `max_chars` characters
        when given: a reader that uses a prefix need not hold a large blob whole."""
        try:
            with self.path(sha256).open(encoding="utf-8", errors="replace") as text:
                return text.read(max_chars)
        except FileNotFoundError:
            return None

    def incoming(self) -> Incoming:
        return Incoming(self._incoming)

    def place(self, incoming: Incoming) -> bool:
        """Moves a finished incoming file to its address; True when the content was new
        (otherwise the stored copy is kept and the incoming one dropped)."""
        incoming.finish()
        return self.place_file(incoming.path, incoming.sha256)

    def place_file(self, path: Path, sha256: str) -> bool:
        """Moves a complete, fsynced file whose digest is `sha256` to its address."""
        target = self.path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
            created = True
        except FileExistsError:
            created = False
        path.unlink(missing_ok=True)
        if created:
            _fsync_directory(target.parent)
        return created

    def incoming_path(self) -> Path:
        """A fresh name in the incoming directory, for a file another process writes."""
        fd, name = tempfile.mkstemp(dir=self._incoming, prefix="converted-")
        os.close(fd)
        return Path(name)

    def remove(self, sha256: str) -> bool:
        try:
            self.path(sha256).unlink()
        except FileNotFoundError:
            return False
        return True

    def stored(self) -> Iterator[str]:
        for path in self.root.glob("??/??/*"):
            if _SHA256.fullmatch(path.name):
                yield path.name

    def forget_incoming(self, older_than_seconds: float = 3600.0) -> int:
        """Removes temporary files left by uploads or conversions that a crash interrupted."""
        cutoff = time.time() - older_than_seconds
        removed = 0
        for path in self._incoming.iterdir():
            try:
                if path.stat().st_mtime <= cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue  # finished meanwhile
        return removed

    def size(self, sha256: str) -> int:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            return 0

    def lock(self) -> BlobLock:
        return BlobLock(self.root / ".lock")

    @asynccontextmanager
    async def locked(self) -> AsyncIterator[None]:
        """The blob lock from the event loop: coroutines of this process queue on an asyncio
        lock first, so at most one worker thread ever waits on the file lock (many threads
        blocked in flock would starve the thread pool the holder needs to finish)."""
        if self._local is None:
            self._local = asyncio.Lock()
        async with self._local:
            lock = self.lock()
            await anyio.to_thread.run_sync(lock.acquire)
            try:
                yield
            finally:
                lock.release()


class BlobLock:
    """An exclusive advisory lock across threads and processes (flock on its own descriptor)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> BlobLock:
        self.acquire()
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

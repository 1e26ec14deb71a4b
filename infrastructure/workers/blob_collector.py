"""Removes blobs that nothing references any more: a deleted document's content and its
conversions' outputs, unless another document has the same bytes.

References are read from the documents read model, and only once it has caught up with the
log's head as it stood after taking the blob lock; uploads and conversions place a blob and
record its event under the same lock, so a blob about to be referenced is never removed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from infrastructure.storage.blob_store import BlobStore
from infrastructure.storage.read_store import SQLiteReadStore
from infrastructure.workers.threads import run_in_thread
from projections.documents import DocumentsProjector, referenced

log = logging.getLogger(__name__)


class BlobCollector:
    def __init__(
        self,
        blobs: BlobStore,
        read_store: SQLiteReadStore,
        head: Callable[[], int],
        catch_up: Callable[[int], None],
    ) -> None:
        """`catch_up(head)` returns once the documents projection has (very likely) reached
        `head`: a server waits for its runner, the CLI runs the projectors itself."""
        self._blobs = blobs
        self._read_store = read_store
        self._head = head
        self._catch_up = catch_up

    def collect(self, candidates: Iterable[str] | None = None) -> list[str]:
        """Removes the unreferenced blobs among `candidates` (all stored blobs when None);
        returns their digests. Removes nothing while the read model is behind."""
        with self._blobs.lock():
            return self.collect_holding_lock(candidates)

    def collect_holding_lock(self, candidates: Iterable[str] | None = None) -> list[str]:
        """`collect` for a caller that already holds the blob lock (the server, through
        `BlobStore.locked`)."""
        head = self._head()
        self._catch_up(head)
        with self._read_store.transaction() as tx:
            reached = tx.positions().get(DocumentsProjector.name, 0)
            if reached < head:
                log.warning("blob collection skipped: documents read model at %d, log at %d", reached, head)
                return []
            shas = list(self._blobs.stored()) if candidates is None else list(dict.fromkeys(candidates))
            doomed = [sha for sha in shas if not referenced(tx, sha)]
        return [sha for sha in doomed if self._blobs.remove(sha)]

    async def collect_from_loop(self, candidates: Iterable[str]) -> list[str]:
        async with self._blobs.locked():
            return await run_in_thread(self.collect_holding_lock, list(candidates))


def wait_for_projection(read_store: SQLiteReadStore, seconds: float = 5.0) -> Callable[[int], None]:
    """For a process whose projection runner runs elsewhere (the server's own thread): polls
    the documents position until it reaches the head or `seconds` pass."""

    def wait(head: int) -> None:
        deadline = time.monotonic() + seconds
        while read_store.positions().get(DocumentsProjector.name, 0) < head and time.monotonic() < deadline:
            time.sleep(0.01)

    return wait

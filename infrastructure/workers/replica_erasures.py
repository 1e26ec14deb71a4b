"""Erasures reach every node's read replica (ADR-041). With the log in PostgreSQL, each node
builds its own read store from the shared log. An erasure or an expiry destroys keys in the
shared key store and the node that ran it rebuilds its own replica, but the other nodes' replicas
still hold what they decoded before: message text, names, snippets in their search index. So
every node watches the key store's generation (it goes up whenever keys are destroyed, by any
node) and rebuilds its replica when the generation moved past the one its replica was last built
at; the generation is kept in the read store itself (`SQLiteReadStore.key_generation`).

On one node the watch also finishes this node's own work: keys are destroyed before the rebuild
that drops what they sealed, so a rebuild that failed, or that a stop or a crash cut short,
would otherwise leave expired or erased text in the read models for good (a retention run finds
no keys left to destroy, and does not rebuild again)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from infrastructure.storage.shadow_rebuild import RebuildStopped, rebuild_running
from infrastructure.workers.erasure import rebuild_after_erasure
from infrastructure.workers.threads import run_in_thread
from infrastructure.write_side import WriteSide

log = logging.getLogger(__name__)


def catch_up_with_erasures(
    write: WriteSide, collect: Callable[[], object] = lambda: None, progress: Callable[[int, int], None] = lambda done, head: None
) -> bool:
    """Rebuilds the replica if keys were destroyed since it was last built; says whether it did.
    A replica that has no generation yet (new, or built before generations were kept) takes the
    current one: what it will project from now on is read with today's keys."""
    generation = write.keys.generation()
    built_at = write.read_store.key_generation()
    if built_at is None:
        write.read_store.set_key_generation(generation)
        return False
    if generation <= built_at:
        return False
    if rebuild_running(write.settings.read_store_path):
        return False  # most likely this node's own erasure rebuilding: looked at again next round
    log.info("keys were destroyed by another node (generation %d, replica at %d): rebuilding the replica", generation, built_at)
    forget = getattr(write.keys, "forget", None)
    if forget is not None:
        forget()  # cached keys may be among the destroyed ones
    rebuild_after_erasure(write, collect, progress)
    return True


class ReplicaErasures:
    """The server's watch: every `interval` seconds, one cheap read of the key generation."""

    def __init__(
        self,
        write: WriteSide,
        interval: float = 2.0,
        collect: Callable[[], object] = lambda: None,
        progress: Callable[[int, int], None] = lambda done, head: None,
    ) -> None:
        self._write = write
        self._interval = interval
        self._collect = collect
        self._progress = progress

    async def run(self) -> None:
        """A round that fails (a rebuild that cannot finish: a full disk, a poisoned event) waits
        twice as long as the one before, up to 5 minutes: a full rebuild every 2 s would refill
        the disk the log writes to."""
        pause = self._interval
        while True:
            try:
                await run_in_thread(catch_up_with_erasures, self._write, self._collect, self._progress)
                pause = self._interval
            except RebuildStopped:
                return  # the server is stopping: the next start rebuilds
            except Exception:  # noqa: BLE001 - logged; the next round tries again
                log.exception("checking the replica against the key generation failed")
                pause = min(pause * 2, 300.0)
            await asyncio.sleep(pause)

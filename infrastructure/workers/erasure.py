"""After an erasure or an expiry (crypto-shredding, decided in `application.erasure`): every
read model is rebuilt from the log (now reading "[erased]" for what the destroyed keys sealed)
through shadow tables, and the files nobody references any more are removed. The log keeps its
shape and its hash chain."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from infrastructure.storage.shadow_rebuild import rebuild
from infrastructure.write_side import WriteSide

log = structlog.stdlib.get_logger(__name__)


def rebuild_after_erasure(
    write: WriteSide, collect: Callable[[], object], progress: Callable[[int, int], None] = lambda done, head: None
) -> int:
    """Rebuilds every read model from the log, then `collect`s the files nobody references now.
    The key generation read before the rebuild is recorded in the read store: the read models
    hold nothing that keys destroyed up to then sealed (other nodes compare it, ADR-041)."""
    log.info("erasure: rebuilding every read model")
    generation = write.keys.generation()
    reached = rebuild(write.reader, write.settings.read_store_path, write.runner.projectors, progress, settings=write.settings)
    write.read_store.set_key_generation(generation)
    write.runner.wake()
    collect()
    return reached

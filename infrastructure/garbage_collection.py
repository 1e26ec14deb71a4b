"""CPython's collector set up for a long-running process, and its pauses measured.

A full collection scans every container object alive. In a server that is first of all what
start-up made and never frees: modules, the app, its routes and schemas, ≈ 140,000 objects.
Under load a full collection came every few seconds and stopped the event loop for 50–100 ms,
which was most of the posting p99 (ADR-048). `freeze_start_up_objects` moves what is alive at
that moment out of the collector's generations (`gc.freeze`): later collections scan only what
was made since; objects that start-up made still free as soon as nothing refers to them."""

from __future__ import annotations

import gc
import time
from typing import Any

from infrastructure.metrics import GC_FROZEN, GC_PAUSES


def freeze_start_up_objects() -> None:
    """Collects once, then keeps everything still alive out of every later scan."""
    gc.collect()
    gc.freeze()


def measure_collections() -> None:
    """Times each collection into `chronicle_gc_pause_seconds` and reports the frozen count."""
    started = [0.0]
    pauses = {generation: GC_PAUSES.labels(str(generation)) for generation in range(3)}

    def timed(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses[info["generation"]].observe(time.perf_counter() - started[0])

    gc.callbacks.append(timed)
    GC_FROZEN.set_function(gc.get_freeze_count)

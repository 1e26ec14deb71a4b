"""CPython's collector set up for a long-running process.

A full collection scans every container object alive. In a server that is first of all what
start-up made and never frees: modules, the app, its routes and schemas, the runtime, ≈ 140,000
objects. Under load a full collection came every few seconds and stopped the event loop for
50–100 ms, which was most of the posting p99 (ADR-048). `freeze_start_up_objects` moves what is
alive at that moment out of the collector's generations (`gc.freeze`): later collections scan
only what was made since. A frozen object is still freed when its last reference goes, unless it
is part of a reference cycle: cyclic garbage among frozen objects is never collected, so freeze
once, when start-up is done.

Collections are counted by generation on `/metrics` (`python_gc_collections_total`, the
Prometheus client's own collector). Their durations are not: timing them takes a `gc.callbacks`
function, and a collection that starts at the recursion limit (a deeply nested input being
refused) cannot call one without an error on standard error."""

from __future__ import annotations

import gc

from infrastructure.metrics import GC_FROZEN


def freeze_start_up_objects() -> None:
    """Collects once, then keeps everything still alive out of every later scan."""
    gc.collect()
    gc.freeze()
    GC_FROZEN.set_function(gc.get_freeze_count)

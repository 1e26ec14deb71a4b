"""CPython's collector set up for a long-running process.

A full collection scans every container object alive. In a server that is first of all what
start-up made and never frees: modules, the app, its routes and schemas, the runtime, ≈ 140,000
objects. Under load a full collection came about once a second and stopped the event loop for
up to 100 ms, which was most of the posting p99 (ADR-048). `tune_for_a_long_run` moves what is
alive at that moment out of the collector's generations (`gc.freeze`): later collections scan
only what was made since. A frozen object is still freed when its last reference goes, unless it
is part of a reference cycle: cyclic garbage among frozen objects is never collected, so this
runs once, when start-up is done.

What streams make after start-up cannot be frozen: with 10,000 streams open a full collection
scans ≈ 3 million objects and takes up to a second. CPython starts one only after more than
`threshold2` collections of the middle generation since the last (10 by default), and only when
the objects that survived since then add up to a quarter of those it scanned last time; while
10,000 streams connected, the heap kept growing by a quarter and full collections came 16 times
(5.9 s of pauses in all, the longest 1.0 s). `FULL_COLLECTION_AFTER` (100) makes that minimum
gap ten times longer: 3 full collections (1.2 s) for the same connections. Under steady load the
quarter rule decides, and this changes nothing. (Python 3.14's incremental collector ignores
`threshold2`; there the setting does nothing.)

Collections are counted by generation on `/metrics` (`python_gc_collections_total`, the
Prometheus client's own collector). Their durations are not: timing them takes a `gc.callbacks`
function, and a collection that starts at the recursion limit (a deeply nested input being
refused) cannot call one without an error on standard error."""

from __future__ import annotations

import gc

from infrastructure.metrics import GC_FROZEN

FULL_COLLECTION_AFTER = 100
"""Collections of the middle generation a full one waits for, at least (CPython: 10)."""


def tune_for_a_long_run() -> None:
    """Collects once, keeps everything still alive out of every later scan, and lets full
    collections come at most a tenth as often as CPython's default allows."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_AFTER)
    GC_FROZEN.set_function(gc.get_freeze_count)

"""Prometheus metrics recorded by the workers and the streams; `/metrics` exports them and the
admin dashboard reads the very same objects, so the two never disagree."""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram

_SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

REPLIES = Counter("chronicle_assistant_replies", "Assistant reply outcomes recorded", ["outcome"])
REPLY_SECONDS = Histogram(
    "chronicle_assistant_reply_duration_seconds", "From the start of a reply to its recorded outcome", ["outcome"], buckets=_SECONDS
)
REPLIES_IN_FLIGHT = Gauge("chronicle_assistant_replies_in_flight", "Assistant replies being produced")
CONVERSIONS = Counter("chronicle_conversions", "Conversion outcomes recorded, by target type", ["type", "outcome"])
CONVERSION_SECONDS = Histogram(
    "chronicle_conversion_duration_seconds", "Time a conversion took, to its recorded outcome", ["type", "outcome"], buckets=_SECONDS
)
CONVERSIONS_IN_FLIGHT = Gauge("chronicle_conversions_in_flight", "Conversions running")
WEBSOCKETS = Gauge("chronicle_websocket_connections", "Open WebSocket streams")
WEBSOCKETS_OPENED = Counter("chronicle_websocket_connections_opened", "WebSocket streams accepted")
FRAMES_SENT = Counter("chronicle_websocket_frames_sent", "Frames sent on WebSocket streams (stored or ephemeral)", ["kind"])
FRAMES_DROPPED = Counter(
    "chronicle_websocket_frames_dropped", "Frames queued for a stream that was closed for being too slow (it replays them)", ["reason"]
)
SLOW_CONSUMER_CLOSES = Counter("chronicle_websocket_slow_consumer_closes", "Streams closed with 4429 because the client fell behind")
RATE_LIMITED = Counter("chronicle_rate_limit_refusals", "Requests refused by a rate limit (429)", ["limit"])
QUOTA_REFUSED = Counter("chronicle_quota_refusals", "Requests refused because a quota is used up (429)", ["quota"])
REBUILD_DONE = Gauge("chronicle_rebuild_position", "Position a running rebuild has replayed to (0 when none runs)", ["projections"])
REBUILD_HEAD = Gauge("chronicle_rebuild_head", "Head of the log the running rebuild is replaying towards", ["projections"])
REBUILDS = Counter("chronicle_rebuilds", "Read-model rebuilds finished, by outcome", ["outcome"])
LEADER = Gauge("chronicle_leader", "1 while this node leads the cluster's background work (ADR-043), else 0")
ACTIVE_USERS = Gauge("chronicle_active_users", "Users who made an authenticated request in the last 5 minutes")


class ActiveUsers:
    """Who was seen recently: one dict write per authenticated request."""

    WINDOW = 300.0

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    def saw(self, user_id: str) -> None:
        self._seen[user_id] = time.monotonic()

    def count(self) -> int:
        cutoff = time.monotonic() - self.WINDOW
        if len(self._seen) > 10_000:
            self._seen = {u: t for u, t in self._seen.items() if t >= cutoff}
        return sum(1 for t in self._seen.values() if t >= cutoff)


CHAIN_BROKEN = Gauge("chronicle_chain_verification_broken", "1 when the latest verification of the hash chain found it broken")
CHAIN_VERIFIED_AT = Gauge("chronicle_chain_verification_finished_seconds", "When the latest chain verification finished (0: none yet)")
DATA_DIR_FREE = Gauge("chronicle_data_dir_free_bytes", "Bytes the server may still write on the data directory's file system")
DATA_DIR_SIZE = Gauge("chronicle_data_dir_filesystem_bytes", "Size of the data directory's file system")
CPU_CORES = Gauge("chronicle_cpu_cores", "CPUs this process may use (its affinity, or the cgroup's quota when lower)")
MEMORY_LIMIT = Gauge("chronicle_memory_limit_bytes", "Memory this process may use (the cgroup's limit, else the machine's)")
GC_FROZEN = Gauge("chronicle_gc_frozen_objects", "Objects made at start-up and kept out of the collector's scans (gc.freeze)")


def watch_host(data_dir: Path) -> None:
    """Free space, cores and the memory limit, read at scrape time: the alerts divide the process
    collector's CPU seconds and resident memory by them."""
    DATA_DIR_FREE.set_function(lambda: _disk_usage(data_dir, "free"))
    DATA_DIR_SIZE.set_function(lambda: _disk_usage(data_dir, "total"))
    CPU_CORES.set(_cpu_cores())
    MEMORY_LIMIT.set(_memory_limit())


def _disk_usage(data_dir: Path, field: str) -> float:
    """A figure of the data directory's file system; NaN while the directory cannot be read (an
    unmounted or removed volume): the scrape still answers, and the free-space alert sees no
    number rather than the scrape failing."""
    try:
        return float(getattr(shutil.disk_usage(data_dir), field))
    except OSError:
        return math.nan


def _cgroup(name: str) -> list[str]:
    try:
        return (Path("/sys/fs/cgroup") / name).read_text().split()
    except OSError:
        return []


def _cpu_cores() -> float:
    cores = float(len(os.sched_getaffinity(0)))
    quota = _cgroup("cpu.max")
    if len(quota) == 2 and quota[0] != "max":
        cores = min(cores, int(quota[0]) / int(quota[1]))
    return cores


def _memory_limit() -> float:
    machine = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = _cgroup("memory.max")
    return float(min(machine, int(limit[0]))) if limit and limit[0].isdigit() else float(machine)

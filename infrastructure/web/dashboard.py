"""The admin dashboard: the server's own measurements, sampled every few seconds.

Every figure is computed from the Prometheus metrics this process exports at `/metrics` (HTTP
requests and their durations, WebSocket streams, active users, assistant replies and
conversions, the event-log head, the process's CPU time and memory), so the dashboard and a
Prometheus server never disagree; rates and percentiles are taken over the interval between two
samples, as Prometheus's `rate()` and `histogram_quantile()` would. The last 15 minutes are kept."""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Controller, Request, get
from prometheus_client import Metric

from infrastructure.metrics import ACTIVE_USERS, CONVERSIONS, CONVERSIONS_IN_FLIGHT, REPLIES, REPLIES_IN_FLIGHT, WEBSOCKETS
from infrastructure.web.auth import admin_only
from infrastructure.web.http_metrics import DURATION, REQUESTS
from infrastructure.workers.projection_status import ProjectionStatus

log = logging.getLogger(__name__)

INTERVAL = 5.0
KEEP = int(15 * 60 / INTERVAL)


class ResponseTimes(msgspec.Struct):
    p50: float | None
    p95: float | None
    p99: float | None


class InFlight(msgspec.Struct):
    in_flight: int
    failed: int


class ProcessUse(msgspec.Struct):
    cpu_percent: float
    memory_bytes: int
    memory_percent: float


class Point(msgspec.Struct):
    at: datetime
    requests_per_second: float
    p99_ms: float | None
    error_rate: float
    events_per_second: float
    cpu_percent: float
    memory_percent: float
    open_websockets: int


class Dashboard(msgspec.Struct):
    at: datetime
    head: int
    requests_per_second: float
    response_ms: ResponseTimes
    error_rate: float
    """Share of requests answered with a 5xx status, 0 to 1."""
    open_websockets: int
    active_users: int
    events_per_second: float
    projections: list[ProjectionStatus]
    replies: InFlight
    conversions: InFlight
    process: ProcessUse
    series: list[Point]


@dataclass(frozen=True)
class _Totals:
    """Cumulative counters at one moment."""

    monotonic: float
    requests: float
    errors: float
    buckets: tuple[tuple[float, float], ...]
    cpu_seconds: float
    head: int


def _gauge(metric: Any) -> float:
    return sum(s.value for family in metric.collect() for s in family.samples)


def _counted(metric: Any, label: str, value: str) -> float:
    return sum(s.value for family in metric.collect() for s in family.samples if s.name.endswith("_total") and s.labels.get(label) == value)


def _buckets(families: list[Metric]) -> tuple[tuple[float, float], ...]:
    by_bound: dict[float, float] = {}
    for family in families:
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                by_bound[bound] = by_bound.get(bound, 0.0) + sample.value
    return tuple(sorted(by_bound.items()))


def _quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus's `histogram_quantile` over cumulative bucket counts (seconds)."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            return lower_bound + (bound - lower_bound) * ((rank - lower_count) / max(count - lower_count, 1e-9))
        lower_bound, lower_count = bound, count
    return lower_bound


def _memory_total() -> int:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _rss() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class DashboardSampler:
    """Takes a sample every INTERVAL seconds (started by the app's lifespan)."""

    def __init__(self, head: Callable[[], Awaitable[int]], projections: Callable[[], Awaitable[list[ProjectionStatus]]]) -> None:
        self._head = head
        self._projections = projections
        self._series: deque[Point] = deque(maxlen=KEEP)
        self._previous: _Totals | None = None
        self._latest: tuple[Point, ResponseTimes] | None = None
        self._memory_total = _memory_total()

    async def _totals(self) -> _Totals:
        times = os.times()
        families = list(REQUESTS.collect())
        return _Totals(
            time.monotonic(),
            sum(s.value for f in families for s in f.samples if s.name.endswith("_total")),
            sum(s.value for f in families for s in f.samples if s.name.endswith("_total") and s.labels.get("status", "").startswith("5")),
            _buckets(list(DURATION.collect())),
            times.user + times.system,
            await self._head(),
        )

    async def sample(self) -> tuple[Point, ResponseTimes]:
        now = await self._totals()
        before = self._previous or now
        self._previous = now
        elapsed = max(now.monotonic - before.monotonic, 1e-9)
        requests = now.requests - before.requests
        deltas = [(bound, count - dict(before.buckets).get(bound, 0.0)) for bound, count in now.buckets]
        times = ResponseTimes(*(None if (v := _quantile(q, deltas)) is None else round(v * 1000, 2) for q in (0.5, 0.95, 0.99)))
        rss = _rss()
        point = Point(
            at=datetime.now(UTC),
            requests_per_second=round(requests / elapsed, 2) if now is not before else 0.0,
            p99_ms=times.p99,
            error_rate=round((now.errors - before.errors) / requests, 4) if requests > 0 else 0.0,
            events_per_second=round((now.head - before.head) / elapsed, 2) if now is not before else 0.0,
            cpu_percent=round(100 * (now.cpu_seconds - before.cpu_seconds) / elapsed, 1) if now is not before else 0.0,
            memory_percent=round(100 * rss / self._memory_total, 2) if self._memory_total else 0.0,
            open_websockets=int(_gauge(WEBSOCKETS)),
        )
        self._series.append(point)
        self._latest = (point, times)
        return point, times

    async def run(self) -> None:
        while True:
            try:
                await self.sample()
            except Exception:  # noqa: BLE001 - a missed sample is a gap in a chart, not an outage
                log.exception("dashboard sample failed")
            await asyncio.sleep(INTERVAL)

    async def dashboard(self) -> Dashboard:
        point, times = self._latest or await self.sample()
        return Dashboard(
            at=point.at,
            head=self._previous.head if self._previous else 0,
            requests_per_second=point.requests_per_second,
            response_ms=times,
            error_rate=point.error_rate,
            open_websockets=int(_gauge(WEBSOCKETS)),
            active_users=int(_gauge(ACTIVE_USERS)),
            events_per_second=point.events_per_second,
            projections=await self._projections(),
            replies=InFlight(int(_gauge(REPLIES_IN_FLIGHT)), int(_counted(REPLIES, "outcome", "failed"))),
            conversions=InFlight(int(_gauge(CONVERSIONS_IN_FLIGHT)), int(_counted(CONVERSIONS, "outcome", "failed"))),
            process=ProcessUse(point.cpu_percent, _rss(), point.memory_percent),
            series=list(self._series),
        )


class DashboardController(Controller):
    path = "/api/admin/dashboard"
    tags = ["admin"]
    guards = [admin_only]

    @get("/")
    async def dashboard(self, request: Request[Any, Any, Any]) -> Dashboard:
        """Requests/s, response times, error rate, streams, active users, events/s, projections,
        replies and conversions, CPU and memory, with the last 15 minutes as a series."""
        sampler: DashboardSampler = request.app.state.dashboard
        return await sampler.dashboard()

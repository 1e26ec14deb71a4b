"""Liveness and readiness (with projection lag), and Chronicle's own Prometheus metrics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import anyio
import msgspec
from litestar import Controller, Request, Response, get
from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from infrastructure.web.read_your_writes import ProjectionProgress
from infrastructure.workers.leadership import Leadership
from infrastructure.write_side import WriteSide

READY_LAG = 1000
PROJECTION_LAG = Histogram(
    "chronicle_projection_lag_seconds",
    "Time from a commit until every healthy read model has it",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
)


class ProjectionHealth(msgspec.Struct):
    name: str
    position: int
    lag: int


class Health(msgspec.Struct):
    status: str
    ready: bool
    head: int
    projections: list[ProjectionHealth]
    error: str | None = None
    role: Literal["leader", "follower"] = "leader"
    """`leader` while this node runs the cluster's background work (chat engine, conversions,
    retention), else `follower` (ADR-043); a SQLite node always leads."""


def health_of(write: WriteSide, progress: ProjectionProgress, role: Literal["leader", "follower"]) -> Health:
    """Positions as the projection runner last committed them; the head from the event store."""
    head = write.runner.head()
    projections = [
        ProjectionHealth(p.name, progress.positions.get(p.name, 0), max(head - progress.positions.get(p.name, 0), 0))
        for p in write.runner.projectors
    ]
    failures = "; ".join(f"{name} failed at position {f.position}: {f.error}" for name, f in write.runner.failures.items())
    error = "; ".join(e for e in (write.runner.error, failures) if e) or None
    ready = error is None and all(p.lag <= READY_LAG for p in projections)
    return Health("ok", ready, head, projections, error, role)


class HealthController(Controller):
    path = "/health"
    tags = ["health"]

    @get("/", exclude_from_auth=True)
    async def live(self, request: Request[Any, Any, Any], write: WriteSide, progress: ProjectionProgress) -> Health:
        """Always 200 while the process serves; `ready` says whether the read models keep up,
        `role` whether this node leads the background work."""
        return await anyio.to_thread.run_sync(health_of, write, progress, request.app.state.leadership.role)

    @get("/ready", exclude_from_auth=True)
    async def ready(self, request: Request[Any, Any, Any], write: WriteSide, progress: ProjectionProgress) -> Response[Health]:
        health = await anyio.to_thread.run_sync(health_of, write, progress, request.app.state.leadership.role)
        return Response(health, status_code=200 if health.ready else 503)


class ChronicleCollector(Collector):
    """Event-log head, projection positions and lag, and command-bus counters, read at scrape time."""

    def __init__(self, write: WriteSide, progress: ProjectionProgress, leadership: Leadership) -> None:
        self.write = write
        self.progress = progress
        self.leadership = leadership

    def collect(self) -> Iterator[Any]:
        health = health_of(self.write, self.progress, self.leadership.role)
        yield GaugeMetricFamily("chronicle_event_log_head", "Position of the newest event", value=health.head)
        lag = GaugeMetricFamily("chronicle_projection_lag_events", "Events not yet applied", labels=["projection"])
        position = GaugeMetricFamily("chronicle_projection_position", "Last applied position", labels=["projection"])
        for p in health.projections:
            lag.add_metric([p.name], p.lag)
            position.add_metric([p.name], p.position)
        failed = GaugeMetricFamily(
            "chronicle_projection_failed", "1 when the projector stopped at an event it could not apply", labels=["projection"]
        )
        for p in health.projections:
            failed.add_metric([p.name], 1 if p.name in self.write.runner.failures else 0)
        yield lag
        yield position
        yield failed
        yield CounterMetricFamily("chronicle_commands", "Commands handled", value=self.write.bus.commands)
        yield CounterMetricFamily("chronicle_command_batches", "Group commits", value=self.write.bus.batches)

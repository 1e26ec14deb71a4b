"""Each projection's health in one place, for `chronicle projections status`, the admin API and
`/metrics`: its position, the log's head, the lag in events and in seconds (how long ago the
oldest event it has not applied happened), and its state — live, rebuilding (with progress), or
failed at a position with the error."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec

from application.chronicle import Chronicle
from infrastructure.storage.read_store import SQLiteReadStore
from infrastructure.storage.shadow_rebuild import rebuilding


class ProjectionStatus(msgspec.Struct, omit_defaults=True):
    """Also the wire type of `GET /api/admin/projections`."""

    name: str
    position: int
    head: int
    lag_events: int
    lag_seconds: float
    state: str
    error: str | None = None
    failed_at: int | None = None
    rebuilt: int | None = None
    """While rebuilding: the position the shadow tables have reached."""
    events_per_second: float | None = None


def _age_of(app: Chronicle, position: int) -> float:
    found = app.recorder.select_notifications(start=position, limit=1)
    if not found:
        return 0.0
    return max(time.time() - app.mapper.to_domain_event(found[0]).timestamp.timestamp(), 0.0)


def projection_statuses(app: Chronicle, read_store: SQLiteReadStore, names: list[str], read_store_path: Path) -> list[ProjectionStatus]:
    head = app.recorder.max_notification_id() or 0
    positions, failures, shadows = read_store.positions(), read_store.failures(), rebuilding(read_store_path)
    result = []
    for name in names:
        position = positions.get(name, 0)
        lag = max(head - position, 0)
        state, error, failed_at = "live", None, None
        if name in failures:
            failed_at, error = failures[name]
            state = "failed"
        elif name in shadows:
            state = f"rebuilding {100 * shadows[name] // max(head, 1)}%"
        result.append(
            ProjectionStatus(
                name, position, head, lag, round(_age_of(app, position + 1), 3) if lag else 0.0, state, error, failed_at, shadows.get(name)
            )
        )
    return result

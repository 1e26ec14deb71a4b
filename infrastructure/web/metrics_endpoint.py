"""`/metrics`, Prometheus's text exposition, behind `CHRONICLE_METRICS_TOKEN` when it is set:
the figures name projections, routes and volumes, which an operator may not want public."""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.plugins.prometheus import PrometheusController


def metrics_token(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Open when no token is configured; otherwise `Authorization: Bearer <token>` or a 401."""
    expected: str | None = connection.app.state.settings.metrics_token
    if expected is None:
        return
    scheme, _, given = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise NotAuthorizedException(
            "/metrics needs Authorization: Bearer <CHRONICLE_METRICS_TOKEN>", headers={"WWW-Authenticate": 'Bearer realm="metrics"'}
        )


class MetricsController(PrometheusController):
    guards = [metrics_token]

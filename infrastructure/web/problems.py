"""Every error a client can cause becomes an RFC 9457 problem detail (`application/problem+json`);
validation errors name their field; an unexpected error is logged and answered without a traceback."""

from __future__ import annotations

import errno
import logging
import re
from datetime import UTC, datetime
from typing import Any

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError, PersistenceError
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    ServiceUnavailableException,
    ValidationException,
)

from domain.aggregate import Conflict, DomainError, Forbidden, InvalidValue, NotFound
from domain.usage import QuotaExceeded
from domain.user import LinkNotValid
from infrastructure.metrics import QUOTA_REFUSED

log = logging.getLogger(__name__)

_MEDIA_TYPE = "application/problem+json"
_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    507: "Insufficient Storage",
    409: "Conflict",
    410: "Gone",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    416: "Range Not Satisfiable",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class ReadModelBehind(ServiceUnavailableException):
    """The read model did not reach the requested position in time (read-your-writes)."""

    def __init__(self, position: int) -> None:
        super().__init__(
            detail=f"the read model has not yet reached position {position}; retry shortly",
            headers={"Retry-After": "1"},
        )


def problem(status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> Response[Any]:
    body = {"type": "about:blank", "title": _TITLES.get(status, "Error"), "status": status, "detail": detail, **extra}
    return Response(body, status_code=status, media_type=_MEDIA_TYPE, headers=headers)


def _domain_error(request: Request, error: DomainError) -> Response[Any]:
    if isinstance(error, LinkNotValid):
        return problem(410, str(error))
    if isinstance(error, InvalidValue):
        return problem(400, str(error), errors=[{"field": error.field, "message": str(error)}])
    status = 404 if isinstance(error, NotFound) else 403 if isinstance(error, Forbidden) else 409
    if not isinstance(error, (NotFound, Forbidden, Conflict)):
        status = 400
    return problem(status, str(error))


_NAMED_FIELD = re.compile(r"(?:unknown|missing required) field `([^`]+)`")


def _field_of(item: dict[str, Any]) -> str:
    """Litestar names the whole body `data`; name the offending field where msgspec says it."""
    key = item.get("key")
    if key in (None, "data"):
        found = _NAMED_FIELD.search(str(item.get("message", "")))
        return found.group(1) if found else "body"
    return str(key)


def _validation_error(request: Request, error: ValidationException) -> Response[Any]:
    errors = [
        {"field": _field_of(item), "message": item.get("message", "invalid")}
        for item in (error.extra if isinstance(error.extra, list) else [])
        if isinstance(item, dict)
    ]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or str(error.detail)
    return problem(400, detail, errors=errors)


def _http_error(request: Request, error: HTTPException) -> Response[Any]:
    if error.status_code == 500 and "client disconnected" in str(error.detail):
        log.info("%s %s: the client went away before its request was read", request.method, request.url.path)
        return problem(400, "the request ended before its body was complete")
    if isinstance(error, ReadModelBehind):
        log.warning("%s %s: %s", request.method, request.url.path, error.detail)
    elif error.status_code >= 500:
        log.error("%s %s failed: %r", request.method, request.url.path, error, exc_info=error)
    extra = error.extra if isinstance(error.extra, dict) else {}
    return problem(error.status_code, str(error.detail), headers=error.headers, **extra)


def _quota_exceeded(request: Request, error: QuotaExceeded) -> Response[Any]:
    QUOTA_REFUSED.labels(error.quota).inc()
    headers = None
    if error.resets_at is not None:
        headers = {"Retry-After": str(max(int((error.resets_at - datetime.now(UTC)).total_seconds()), 1))}
    return problem(
        429,
        str(error),
        headers,
        quota=error.quota,
        limit=error.limit,
        used=error.used,
        resets_at=error.resets_at.isoformat() if error.resets_at else None,
    )


def _undecodable_body(request: Request, error: Exception) -> Response[Any]:
    """Raised by the JSON decoder for a body that is not UTF-8 or nests without end (msgspec
    reports both outside its DecodeError, so Litestar does not turn them into a 400)."""
    reason = "is not valid UTF-8" if isinstance(error, UnicodeDecodeError) else "nests too deeply"
    log.info("%s %s: the request body %s", request.method, request.url.path, reason)
    return problem(400, f"the request body {reason}", errors=[{"field": "body", "message": reason}])


def _storage_fault(request: Request, error: Exception) -> Response[Any]:
    """The store refused a write (disk full, I/O error, locked for too long): nothing was
    recorded, and the client may try again once an operator has made room (507) or soon (503).
    A PostgreSQL connection that failed is answered as the database being unreachable."""
    if isinstance(error, OperationalError | InterfaceError) and isinstance(
        error.__cause__, psycopg.OperationalError | psycopg.InterfaceError
    ):
        return _database_unreachable(request, error)
    full = isinstance(error, OSError) and error.errno == errno.ENOSPC or "full" in str(error).lower()
    log.error("%s %s: storage fault: %s", request.method, request.url.path, error)
    if full:
        return problem(507, "the server's storage is full; nothing was recorded", {"Retry-After": "60"})
    return problem(503, "the server's storage is unavailable; nothing was recorded, retry shortly", {"Retry-After": "5"})


def _database_unreachable(request: Request, error: Exception) -> Response[Any]:
    """The PostgreSQL database did not answer (its connections were terminated, it restarts, the
    network is down), even after the retries eventsourcing's recorder makes (10 over ~2 s) and
    the pool's pre-ping: 503 while it lasts; the pool connects again by itself."""
    log.warning("%s %s: the database is unreachable: %s", request.method, request.url.path, str(error).strip()[:300])
    return problem(503, "the database is unreachable; retry shortly", {"Retry-After": "2"})


def _os_error(request: Request, error: OSError) -> Response[Any]:
    if error.errno in (errno.ENOSPC, errno.EIO, errno.EDQUOT):
        return _storage_fault(request, error)
    return _unexpected_error(request, error)


def _unexpected_error(request: Request, error: Exception) -> Response[Any]:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=error)
    return problem(500, "an unexpected error occurred; it has been logged")


exception_handlers: dict[Any, Any] = {
    DomainError: _domain_error,
    QuotaExceeded: _quota_exceeded,
    ValidationException: _validation_error,
    HTTPException: _http_error,
    UnicodeDecodeError: _undecodable_body,
    psycopg.OperationalError: _database_unreachable,
    psycopg.InterfaceError: _database_unreachable,
    PersistenceError: _storage_fault,
    OSError: _os_error,
    RecursionError: _undecodable_body,
    Exception: _unexpected_error,
}

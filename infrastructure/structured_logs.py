"""Structured logs: structlog renders every line, Chronicle's own and the libraries' (uvicorn,
Litestar) alike, as JSON (`CHRONICLE_LOG_FORMAT=json`) or aligned key=value text (`console`).

Each line carries the correlation id of the request or command it belongs to (bound by the
request middleware, or read from the command's provenance), and the trace id when a trace is
recorded. A last processor scrubs what must never reach a log: fields named like secrets are
dropped, and bearer tokens or `token=` query values inside messages are cut out."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import msgspec
import structlog
from opentelemetry import trace

from domain.provenance import current_provenance

TRACE = 5
"""uvicorn's `trace` level, below DEBUG."""

_FORBIDDEN_KEYS = frozenset({"password", "token", "access_token", "secret", "secret_key", "authorization", "content", "api_key"})
_TOKENS = re.compile(r"((?:token|access_token)=)[^&\s\"']+|((?:Bearer|bearer)\s+)[A-Za-z0-9._~+/=-]+")


def add_correlation_id(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A command's correlation id (its provenance) when no request bound one."""
    if "correlation_id" not in event:
        correlation_id = current_provenance().correlation_id
        if correlation_id:
            event["correlation_id"] = correlation_id
    return event


def add_trace_id(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The recorded trace this line belongs to, so a log line leads to its trace."""
    if "trace_id" not in event:
        context = trace.get_current_span().get_span_context()
        if context.is_valid and context.trace_flags.sampled:
            event["trace_id"] = format(context.trace_id, "032x")
    return event


def scrub_secrets(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in _FORBIDDEN_KEYS.intersection(event):
        del event[key]
    message = event.get("event")
    if isinstance(message, str) and ("oken" in message or "earer" in message):
        event["event"] = _TOKENS.sub(lambda m: (m.group(1) or m.group(2)) + "…", message)
    return event


def _json(value: Any, **_: Any) -> str:
    return msgspec.json.encode(value, enc_hook=str).decode()


def configure_logging(log_format: str, level: str) -> None:
    """Routes the standard library's logging (and so uvicorn's and Litestar's) through
    structlog's renderer on standard error. Called once, by the process's entry point."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_correlation_id,
        add_trace_id,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.PositionalArgumentsFormatter(),
        scrub_secrets,
    ]
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    if log_format == "json":
        rendering: list[Any] = [structlog.processors.format_exc_info, structlog.processors.JSONRenderer(serializer=_json)]
    else:
        rendering = [structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared, processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering]
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(TRACE if level == "trace" else level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "litestar"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True


def log_start_up(settings: Any, address: str) -> None:
    """The first line an operator looks for: what runs, on which data, answering where."""
    from infrastructure.tracing import chronicle_version

    structlog.stdlib.get_logger("chronicle.server").info(
        "starting",
        version=chronicle_version(),
        data_dir=str(settings.data_dir),
        provider=settings.assistant_provider,
        model=settings.llm_model or None,
        listening=address,
        tracing=settings.otlp_endpoint is not None,
        settings=settings.effective(),
    )

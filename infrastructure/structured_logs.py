"""Structured logs: structlog renders every line, Chronicle's own and the libraries' (uvicorn,
Litestar) alike, as JSON (`CHRONICLE_LOG_FORMAT=json`) or aligned key=value text (`console`).

Each line carries the correlation id of the request or command it belongs to (bound by the
request middleware, or read from the command's provenance), and the trace id when a trace is
recorded. A last processor scrubs what must never reach a log: fields named like secrets are
dropped, and bearer tokens or `token=` query values inside messages are cut out.

The access line is written on every request, so the path is kept short (ADR-034): structlog's
own lines (`structlog.stdlib.get_logger`) go through a filtering bound logger straight to the
renderer, never through a standard library `LogRecord`, handler and formatter (a quarter of the
cost); and the thread that logs only queues the rendered line, which a writer thread puts on
standard error with whatever else has queued up, so a request neither waits on the write nor
hands the GIL to another thread while the write is under way. The standard library's records
(uvicorn's, Litestar's, `logging.getLogger`) are rendered by the same processors in the thread
that logs them (where the request's context is) and queued the same way."""

from __future__ import annotations

import atexit
import logging
import os
import queue
import re
import sys
import threading
import time
from collections.abc import MutableMapping
from typing import Any, TextIO

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


_second: tuple[int, str] = (0, "")


def add_timestamp(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """ISO 8601 in UTC with microseconds (`2026-12-02T08:45:06.717266Z`), as structlog's
    `TimeStamper(fmt="iso", utc=True)` writes it, for a third of its cost: the date and time
    of day are formatted once a second."""
    global _second
    now = time.time()
    second = int(now)
    cached = _second
    if cached[0] != second:
        cached = _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    event["timestamp"] = f"{cached[1]}.{int((now - second) * 1_000_000):06d}Z"
    return event


class LineWriter:
    """Rendered lines on their way to a stream (standard error). `write` only queues the line;
    a daemon thread writes whatever has queued up in one call and flushes. Lines are written
    before the process ends: at exit (`atexit`), and by `flush_logs` where a signal ends it.
    Past `LIMIT` queued lines a logging thread waits for the writer, as it would on a direct
    write to a stream that cannot keep up. A forked child starts with an empty queue and a
    writer of its own."""

    LIMIT = 10_000

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lock = threading.Lock()
        self._reset()
        os.register_at_fork(after_in_child=self._reset)
        atexit.register(self.close)

    def _reset(self) -> None:
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._closed = False

    def write(self, line: str) -> None:
        if self._writer is None and not self._start():
            self._write_now([line])
            return
        self._lines.put(line)
        if self._lines.qsize() > self.LIMIT:
            while self._lines.qsize() > self.LIMIT // 2 and self._writer is not None and self._writer.is_alive():
                time.sleep(0.001)

    def _start(self) -> bool:
        with self._lock:
            if self._writer is None and not self._closed:
                writer = threading.Thread(target=self._run, args=(self._lines,), name="log-writer", daemon=True)
                try:
                    writer.start()
                except RuntimeError:  # interpreter shutting down
                    return False
                self._writer = writer
            return self._writer is not None

    def _run(self, lines: queue.SimpleQueue[str | None]) -> None:
        while True:
            batch = [lines.get()]
            try:
                while len(batch) < 1_000:
                    batch.append(lines.get_nowait())
            except queue.Empty:
                pass
            self._write_now([line for line in batch if line is not None])
            if None in batch:
                return

    def _write_now(self, lines: list[str]) -> None:
        if not lines:
            return
        try:
            with self._lock:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
        except (OSError, ValueError):  # a closed or broken standard error loses its lines, as a StreamHandler does
            pass

    def close(self) -> None:
        """Writes every line queued so far; lines logged afterwards are written at once."""
        with self._lock:
            self._closed = True
            writer, self._writer = self._writer, None
        if writer is not None and writer is not threading.current_thread():
            self._lines.put(None)
            writer.join(5)
        left = []
        try:
            while True:
                left.append(self._lines.get_nowait())
        except queue.Empty:
            pass
        self._write_now([line for line in left if line is not None])


class _LineLogger:
    """The logger structlog's bound loggers hand their rendered lines to."""

    __slots__ = ("name", "_lines")

    def __init__(self, name: str, lines: LineWriter) -> None:
        self.name = name
        self._lines = lines

    def msg(self, line: str) -> None:
        self._lines.write(line)

    debug = info = warning = warn = error = critical = exception = fatal = msg


class _LineHandler(logging.Handler):
    """The standard library's records, rendered in the thread that logs them, then queued."""

    def __init__(self, lines: LineWriter) -> None:
        super().__init__()
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.write(self.format(record))
        except Exception:
            self.handleError(record)


_writer: LineWriter | None = None


def flush_logs() -> None:
    """Writes the queued lines now: before a signal ends the process without running `atexit`."""
    if _writer is not None:
        _writer.close()


def configure_logging(log_format: str, level: str) -> None:
    """Routes the standard library's logging (and so uvicorn's and Litestar's) and structlog's
    loggers through one processor chain and renderer to standard error. Called once, by the
    process's entry point."""
    global _writer
    number = TRACE if level == "trace" else logging.getLevelName(level.upper())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_correlation_id,
        add_trace_id,
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        add_timestamp,
        scrub_secrets,
    ]
    if log_format == "json":
        rendering: list[Any] = [structlog.processors.format_exc_info, structlog.processors.JSONRenderer(serializer=_json)]
    else:
        # Plain tracebacks: structlog's default with Rich installed renders every frame's local
        # variables (message contents, passwords in a handler's arguments) and highlights them with
        # Pygments, in the thread that logs, often the event loop: 360 ms for a 20-frame traceback.
        rendering = [structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback)]
    if _writer is None or _writer.stream is not sys.stderr:
        if _writer is not None:
            _writer.close()
        _writer = LineWriter(sys.stderr)
    lines = _writer
    structlog.configure(
        processors=[*shared, *rendering],
        logger_factory=lambda *args: _LineLogger(args[0] if args else "chronicle", lines),
        wrapper_class=structlog.make_filtering_bound_logger(number),
        cache_logger_on_first_use=True,
    )
    handler = _LineHandler(lines)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared, processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering]
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(number)
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

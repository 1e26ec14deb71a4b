"""The `chronicle` command line: serve, users, projections, documents."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import sys
import time
from datetime import UTC
from pathlib import Path
from uuid import UUID

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

console = Console(stderr=True, soft_wrap=True)

_data_dir = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CHRONICLE_DATA_DIR",
    default="./var",
    show_default=True,
    help="Where the event store, read store and keys live (env CHRONICLE_DATA_DIR).",
)


def _use_database_url(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        os.environ["CHRONICLE_DATABASE_URL"] = value  # Settings, the only source of configuration, reads it


_database_url = click.option(
    "--database-url",
    envvar="CHRONICLE_DATABASE_URL",
    default=None,
    expose_value=False,
    callback=_use_database_url,
    metavar="postgresql://…",
    help="Keep the event log and the data keys in this PostgreSQL database; the read models stay in "
    "--data-dir (env CHRONICLE_DATABASE_URL; unset: SQLite files in --data-dir).",
)


def data_dir_option(command):  # type: ignore[no-untyped-def]
    """`--data-dir` and `--database-url`, on every command that opens the stores."""
    return _data_dir(_database_url(command))


def _settings(data_dir: Path):  # type: ignore[no-untyped-def]
    from infrastructure.settings import Settings

    os.environ["CHRONICLE_DATA_DIR"] = str(data_dir)
    try:
        return _logged(Settings.from_env(data_dir))
    except ValueError as error:  # a setting out of range or missing: one line, no traceback
        click.echo(f"error: {error}", err=True)
        sys.exit(2)


def _logged(settings):  # type: ignore[no-untyped-def]
    """Logs as the server does (`CHRONICLE_LOG_FORMAT`), every line of this command carrying
    one correlation id, also recorded on the events its commands append (`_cli_id`)."""
    import structlog

    from domain.identity import new_id
    from infrastructure.structured_logs import configure_logging

    configure_logging(settings.log_format, settings.log_level)
    structlog.contextvars.bind_contextvars(correlation_id=str(new_id()))
    return settings


def _cli_id() -> str | None:
    import structlog

    return structlog.contextvars.get_contextvars().get("correlation_id")


def _observe(settings, role: str):  # type: ignore[no-untyped-def]
    import structlog

    from infrastructure.structured_logs import configure_logging
    from infrastructure.tracing import install_tracing

    configure_logging(settings.log_format, settings.log_level)
    structlog.contextvars.clear_contextvars()  # a server's lines carry their request's id, not one for the process
    return install_tracing(settings, role)


def _existing_settings(data_dir: Path):  # type: ignore[no-untyped-def]
    """For commands that only read: a data directory that does not exist or holds no event store
    is refused (exit 2, one line), and nothing is created in it."""
    from infrastructure.settings import Settings

    if not os.environ.get("CHRONICLE_DATABASE_URL") and not (data_dir / "events.sqlite3").is_file():
        click.echo(f"error: {data_dir} holds no Chronicle event store (events.sqlite3); check --data-dir", err=True)
        sys.exit(2)
    return _logged(Settings.from_env(data_dir, read_only=True))


class ChronicleGroup(click.Group):
    """Every command: a PostgreSQL database this node cannot use as it is (a newer schema, an
    unfinished migrate) stops it with the reason and exit status 2."""

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        from infrastructure.storage.postgres_schema import DatabaseRefused

        try:
            return super().invoke(ctx)
        except DatabaseRefused as refused:
            click.echo(f"error: {refused}", err=True)
            sys.exit(2)


@click.group(cls=ChronicleGroup, help="Chronicle: an event-sourced chat and document backend.")
@click.version_option(package_name="chronicle", message="%(prog)s %(version)s")  # the installed package's version
def main() -> None:
    os.umask(0o077)  # every file and folder Chronicle makes is its user's alone (0600/0700)


@main.command(help="Serve the HTTP API.")
@data_dir_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--log-level", envvar="CHRONICLE_LOG_LEVEL", default="info", show_default=True, help="(env CHRONICLE_LOG_LEVEL)")
def serve(data_dir: Path, host: str, port: int, log_level: str) -> None:
    import fcntl

    import uvicorn

    from infrastructure.bootstrap import prepare_storage
    from infrastructure.garbage_collection import tune_for_a_long_run
    from infrastructure.structured_logs import log_start_up
    from infrastructure.web.app import create_app
    from infrastructure.web.http_protocol import BoundedHttpToolsProtocol
    from infrastructure.web.websocket_protocol import LeanWebSocketProtocol

    os.environ["CHRONICLE_LOG_LEVEL"] = log_level
    settings = _settings(data_dir)
    try:
        settings.require_shared_secret()
    except ValueError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    lock = open(settings.data_dir / "serve.lock", "a+")  # held for the life of this process, released by the kernel when it ends
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        click.echo(
            f"error: another chronicle serve is already using {settings.data_dir}; one server per data directory"
            " (its read models and live streams are that process's). To run several nodes, give each its own"
            " --data-dir and share CHRONICLE_DATABASE_URL (see README, operations)",
            err=True,
        )
        sys.exit(2)
    prepare_storage(settings)  # before serving: the schema upgraded, or the reason it cannot be (exit 2)
    app = create_app(settings)
    tracing = _observe(settings, "server")  # after create_app: Litestar configures logging too, this has the last word
    log_start_up(settings, f"http://{host}:{port}")
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level,
        log_config=None,
        loop="uvloop",
        ws=LeanWebSocketProtocol,
        http=BoundedHttpToolsProtocol.bounded(settings.header_timeout, settings.body_idle_timeout),
        ws_ping_interval=settings.stream_ping_interval or None,
        ws_ping_timeout=settings.stream_ping_timeout or None,
        ws_per_message_deflate=settings.stream_compression,
        access_log=False,
        proxy_headers=bool(app.state.settings.trusted_proxies),
        forwarded_allow_ips=list(app.state.settings.trusted_proxies) or None,
    )
    logging.getLogger("uvicorn.error").addFilter(_redact_tokens)
    signal.signal(signal.SIGTERM, _flush_logs_then_terminate)  # uvicorn raises SIGTERM again once it has shut down
    app.on_startup.append(tune_for_a_long_run)  # after the lifespan built the runtime: what start-up made stays out of scans
    try:
        uvicorn.Server(config).run()
    finally:
        if tracing is not None:
            tracing.shutdown()  # flushes the last spans


def _flush_logs_then_terminate(number: int, frame: object) -> None:
    """After a graceful shutdown uvicorn raises the signal that asked for it again, to end with
    it; the lines still queued for standard error are written first (`atexit` would not run)."""
    from infrastructure.structured_logs import flush_logs

    flush_logs()
    signal.signal(number, signal.SIG_DFL)
    signal.raise_signal(number)


_TOKEN = re.compile(r"(token=)[^&\s\"]+")


def _redact_tokens(record: logging.LogRecord) -> bool:
    """WebSocket clients may pass their token in the URL; it never reaches the log."""
    if record.args:
        record.args = tuple(_TOKEN.sub(r"\1…", a) if isinstance(a, str) else a for a in record.args)
    record.msg = _TOKEN.sub(r"\1…", str(record.msg))
    return True


@main.command(help="Print the OpenAPI document of the HTTP API (the web client's types are generated from it).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None, help="A file instead of stdout.")
def openapi(output: Path | None) -> None:
    import json
    import tempfile

    from infrastructure.settings import Settings
    from infrastructure.web.app import create_app

    with tempfile.TemporaryDirectory() as scratch:  # the app is built, never started: no data is touched
        app = create_app(Settings.from_env(scratch))
        document = json.dumps(app.openapi_schema.to_schema(), indent=2, sort_keys=True) + "\n"
    if output is None:
        sys.stdout.write(document)
    else:
        output.write_text(document)


@main.command("frame-schema", help="Print the JSON Schema of every WebSocket stream frame.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None, help="A file instead of stdout.")
def frame_schema_command(output: Path | None) -> None:
    import json

    from projections.frame_types import frame_schema

    document = json.dumps(frame_schema(), indent=2, sort_keys=True) + "\n"
    if output is None:
        sys.stdout.write(document)
    else:
        output.write_text(document)


@main.group(help="Manage users.")
def users() -> None:
    pass


@users.command("create", help="Register a user (for example the first admin).")
@data_dir_option
@click.argument("email")
@click.option("--role", type=click.Choice(["user", "admin", "auditor"]), default="user", show_default=True)
@click.option("--display-name", default=None, help="Defaults to the part of EMAIL before the @.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create_user(data_dir: Path, email: str, role: str, display_name: str | None, password_stdin: bool) -> None:
    from application.accounts import RegisterUser
    from application.passwords import PASSWORD_MIN, hash_password
    from domain.aggregate import DomainError
    from infrastructure.bootstrap import bootstrap

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < PASSWORD_MIN:
        raise click.UsageError(f"the password must have at least {PASSWORD_MIN} characters")
    write = bootstrap(_settings(data_dir))
    try:
        register = RegisterUser(email, display_name or email.split("@")[0], hash_password(password), role)
        outcome = write.bus.execute_now(register, "cli", _cli_id())
    except DomainError as error:
        console.print(f"[red]error:[/red] {error}")
        sys.exit(1)
    finally:
        write.close()
    click.echo(f"{outcome.value.id}")
    console.print(f"created {role} {email} at position {outcome.position}")


@users.command("erase", help="Erase a user: destroy their data key, record it, rebuild every read model.")
@data_dir_option
@click.argument("user_id", type=click.UUID)
def erase_user(data_dir: Path, user_id: UUID) -> None:
    from application.erasure import erase_person
    from domain.aggregate import DomainError
    from infrastructure.bootstrap import bootstrap
    from infrastructure.workers.blob_collector import BlobCollector
    from infrastructure.workers.erasure import rebuild_after_erasure

    write = bootstrap(_settings(data_dir))
    try:
        try:
            outcome = erase_person(write.reader, write.keys, lambda command: write.bus.execute_now(command, "cli", _cli_id()), user_id)
        except DomainError as error:
            console.print(f"[red]error:[/red] {error}")
            sys.exit(1)
        console.print(f"erased {user_id} at position {outcome.position}; rebuilding the read models")
        collector = BlobCollector(write.blobs, write.read_store, write.runner.head, _caught_up(write))
        removed: list[str] = []
        reached = rebuild_after_erasure(write, lambda: removed.extend(collector.collect()))
        console.print(f"read models rebuilt to position {reached}; removed {len(removed)} file(s)")
    finally:
        write.close()


@main.group(help="Inspect and rebuild the read models.")
def projections() -> None:
    pass


@projections.command("status", help="Each projection's position, the head, the lag, and its state.")
@data_dir_option
def projections_status(data_dir: Path) -> None:
    from infrastructure.bootstrap import bootstrap
    from infrastructure.workers.projection_status import projection_statuses

    settings = _existing_settings(data_dir)
    if not data_dir.is_dir():  # on PostgreSQL the log is in the database; the read models are here
        click.echo(f"error: {data_dir} is not a data directory (it holds a node's read models); check --data-dir", err=True)
        sys.exit(2)
    write = bootstrap(settings)
    try:
        statuses = projection_statuses(
            write.app, write.read_store, [p.name for p in write.runner.projectors], write.settings.read_store_path
        )
    finally:
        write.close()
    table = Table("projection", "position", "head", "lag", "lag s", "state")
    for status in statuses:
        state = status.state if status.error is None else f"failed at {status.failed_at}: {status.error}"
        table.add_row(status.name, str(status.position), str(status.head), str(status.lag_events), f"{status.lag_seconds:.1f}", state)
    Console().print(table)
    if any(s.error for s in statuses):
        sys.exit(1)


@projections.command(
    "rebuild",
    help="Replay projections from the log into shadow tables, then swap them in "
    "atomically; queries keep answering from the old tables meanwhile (safe while serving).",
)
@data_dir_option
@click.argument("name", required=False)
@click.option("--all", "all_", is_flag=True, help="Rebuild every projection.")
def projections_rebuild(data_dir: Path, name: str | None, all_: bool) -> None:
    from infrastructure.bootstrap import bootstrap
    from infrastructure.storage.shadow_rebuild import RebuildFailed, rebuild

    write = bootstrap(_settings(data_dir))
    try:
        known = {p.name: p for p in write.runner.projectors}
        if all_ == bool(name):
            raise click.UsageError("give a projection NAME or --all")
        if name and name not in known:
            raise click.UsageError(f"no projection {name!r}; known: {', '.join(known)}")
        chosen = list(known.values()) if all_ else [known[name]]  # type: ignore[index]
        head = write.runner.head()
        started = time.perf_counter()
        with Progress(
            TextColumn("rebuilding {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>9,.0f} events/s"),
            TimeRemainingColumn(),
            console=console,
        ) as bar:
            task = bar.add_task(", ".join(p.name for p in chosen), total=max(head, 1), rate=0.0)

            def advance(done: int, now_head: int) -> None:
                elapsed = time.perf_counter() - started
                bar.update(task, completed=done, total=max(now_head, 1), rate=done / elapsed if elapsed else 0.0)

            try:
                reached = rebuild(write.app, write.settings.read_store_path, chosen, advance, settings=write.settings)
            except RebuildFailed as error:
                console.print(f"[red]rebuild failed[/red]: {error}; the live tables are unchanged")
                sys.exit(1)
            bar.update(task, completed=max(reached, 1), total=max(reached, 1))
        elapsed = time.perf_counter() - started
        console.print(
            f"rebuilt {', '.join(p.name for p in chosen)}: {reached} events in {elapsed:.2f}s "
            f"({reached / elapsed if elapsed else 0:,.0f} events/s), swapped in at position {reached}"
        )
    finally:
        write.close()


@main.group(help="Retention of message content.")
def retention() -> None:
    pass


@retention.command("run", help="Erase message content older than its retention period, then rebuild the read models.")
@data_dir_option
@click.option("--today", type=click.DateTime(formats=["%Y-%m-%d"]), default=None, help="The day to count from (default: today, UTC).")
def retention_run(data_dir: Path, today) -> None:  # type: ignore[no-untyped-def]
    from datetime import datetime

    from infrastructure.bootstrap import bootstrap
    from infrastructure.workers.blob_collector import BlobCollector
    from infrastructure.workers.erasure import rebuild_after_erasure
    from infrastructure.workers.retention import RetentionPostponed, apply_retention

    write = bootstrap(_settings(data_dir))
    try:
        _caught_up(write)(write.runner.head())
        day = (today or datetime.now(UTC)).date()
        try:
            expired = apply_retention(write, day, lambda command: write.bus.execute_now(command, "retention", _cli_id()))
        except RetentionPostponed as postponed:
            console.print(f"[red]postponed:[/red] {postponed}")
            sys.exit(1)
        for session_id, (before, count) in expired.items():
            console.print(f"session {session_id}: content before {before} erased ({count} day key(s))")
        if expired:
            collector = BlobCollector(write.blobs, write.read_store, write.runner.head, _caught_up(write))
            reached = rebuild_after_erasure(write, collector.collect)
            console.print(f"read models rebuilt to position {reached}")
        console.print(f"{len(expired)} session(s) had expired content")
    finally:
        write.close()


@main.group(help="Maintain documents and their stored files.")
def documents() -> None:
    pass


def _caught_up(write):  # type: ignore[no-untyped-def]
    """Waits (up to 5 s) for a running server's projectors to reach the head, so its live
    subscribers get every frame; with no server running, projects the rest itself."""

    def lowest() -> int:
        return min(write.runner.positions().values(), default=0)

    def catch_up(head: int) -> None:
        deadline, seen, moved_at = time.monotonic() + 5, lowest(), time.monotonic()
        while seen < head and time.monotonic() < deadline and time.monotonic() - moved_at < 0.5:
            time.sleep(0.02)
            if (now := lowest()) != seen:
                seen, moved_at = now, time.monotonic()
        if seen < head:  # no server is following the log (or it is far behind)
            write.runner.catch_up()

    return catch_up


@documents.command("gc", help="Remove stored files that no document or conversion references.")
@data_dir_option
def documents_gc(data_dir: Path) -> None:
    from infrastructure.bootstrap import bootstrap
    from infrastructure.workers.blob_collector import BlobCollector

    write = bootstrap(_settings(data_dir))
    try:
        sizes = {sha: write.blobs.size(sha) for sha in write.blobs.stored()}
        collector = BlobCollector(write.blobs, write.read_store, write.runner.head, _caught_up(write))
        removed = collector.collect()
        stale = write.blobs.forget_incoming()
    finally:
        write.close()
    freed = sum(sizes.get(sha, 0) for sha in removed)
    console.print(
        f"removed {len(removed)} unreferenced blob(s), {freed:,} bytes; kept {len(sizes) - len(removed)}"
        + (f"; removed {stale} stale incoming file(s)" if stale else "")
    )


@documents.command("reconvert", help="Request failed conversions again (a running server performs them).")
@data_dir_option
@click.option("--failed", is_flag=True, required=True, help="Every conversion whose last attempt failed.")
def documents_reconvert(data_dir: Path, failed: bool) -> None:
    from application.documents import RetryConversion
    from domain.aggregate import DomainError
    from infrastructure.bootstrap import bootstrap
    from projections.documents import failed_conversions

    write = bootstrap(_settings(data_dir))
    retried = 0
    try:
        _caught_up(write)(write.runner.head())
        with write.read_store.transaction() as tx:
            chosen = failed_conversions(tx)
        for conversion_id in chosen:
            try:
                write.bus.execute_now(RetryConversion(UUID(conversion_id)), "cli", _cli_id())
                retried += 1
            except DomainError as error:
                console.print(f"[yellow]skipped[/yellow] {conversion_id}: {error}")
    finally:
        write.close()
    console.print(f"requested {retried} failed conversion(s) again")


@main.group(help="Audit the event log.")
def audit() -> None:
    pass


@audit.command("verify", help="Walk the whole log and check every link of its hash chain.")
@data_dir_option
@click.option(
    "--expect-head", default=None, metavar="HASH", help="A head hash printed by an earlier verify: fail if the log no longer contains it."
)
def audit_verify(data_dir: Path, expect_head: str | None) -> None:
    from infrastructure.storage.event_chain import verify
    from infrastructure.storage.event_store import chain_of, open_event_store

    settings = _existing_settings(data_dir)
    started = time.perf_counter()
    reader = open_event_store(settings, cached=False)
    try:
        with Progress(
            TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console, transient=True
        ) as bar:
            task = bar.add_task("events", total=None)
            result = verify(chain_of(reader), expect_head=expect_head, progress=lambda done: bar.update(task, completed=done))
    finally:
        reader.close()
    elapsed = time.perf_counter() - started
    if not result.ok:
        where = f" at position {result.broken_at}" if result.broken_at else ""
        console.print(f"[red]chain broken{where}[/red]: {result.problem} ({result.events:,} events verified before it)")
        sys.exit(1)
    rate = result.events / elapsed if elapsed else 0.0
    click.echo(f"{result.events} events verified, head position {result.head_position}, head hash {result.head_hash}")
    console.print(f"in {elapsed:.2f}s ({rate:,.0f} events/s)")


def _as_of(audit, value: str | None) -> int:  # type: ignore[no-untyped-def]
    from datetime import datetime

    if value is None:
        return audit.head()
    if value.isascii() and value.isdigit() and len(value) <= 18:  # '²'.isdigit() is true
        return int(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.UsageError("--as-of takes a position or an ISO-8601 time") from None
    return audit.position_at(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


@audit.command("replay", help="Print a session's history as it was at a moment (default: now).")
@data_dir_option
@click.argument("session_id", type=click.UUID)
@click.option("--as-of", default=None, help="A position or an ISO-8601 time.")
@click.option("--format", "form", type=click.Choice(["text", "json"]), default="text", show_default=True)
def audit_replay(data_dir: Path, session_id: UUID, as_of: str | None, form: str) -> None:
    import msgspec

    from infrastructure.storage.event_store import audit_log, open_event_store

    settings = _existing_settings(data_dir)
    reader = open_event_store(settings, cached=False)
    try:
        log = audit_log(settings, reader)
        position = _as_of(log, as_of)
        timeline = log.timeline(session_id, position)
        if timeline.title is None:
            click.echo(f"error: no session {session_id} at position {position}", err=True)
            sys.exit(1)
        if form == "json":
            click.echo(msgspec.json.encode({"as_of": position, "session": timeline.view(), "steps": timeline.steps}).decode())
            return
        names = _display_names(reader, {s.actor_id for s in timeline.steps})
        # Printed literally (no markup): an audit tool must never hide text such as "[erased]".
        click.echo(f"{timeline.title}  session {session_id}, as of position {position}")
        for step in timeline.steps:
            who = names.get(step.actor_id, step.actor_id)
            click.echo(f"{step.at:%Y-%m-%d %H:%M:%S}  #{step.position:<7} {who:<16} {_describe_step(step)}")
        view = timeline.view()
        click.echo(
            f"\n{len(view['members'])} member(s), {len(view['messages'])} message(s), "
            f"{len(view['documents'])} document(s), {len(view['conversions'])} conversion(s)" + (", archived" if view["archived"] else "")
        )
    finally:
        reader.close()


def _display_names(reader, actor_ids: set[str]) -> dict[str, str]:  # type: ignore[no-untyped-def]
    from domain.user import User

    names = {}
    for actor in actor_ids:
        try:
            user = reader.repository.get(UUID(actor))
        except Exception:  # noqa: BLE001 - "assistant", "cli", erased or unknown: shown as is
            continue
        if isinstance(user, User):
            names[actor] = user.display_name
    return names


_STEP_TEXT = {
    "SessionStarted": lambda d: f"started the session “{d['title']}”",
    "SessionRenamed": lambda d: f"renamed it to “{d['title']}”",
    "AssistantSettingChanged": lambda d: f"turned the assistant {'on' if d['assistant'] else 'off'}",
    "MemberAdded": lambda d: f"added member {d['user_id']}",
    "MemberRemoved": lambda d: f"removed member {d['user_id']}",
    "SessionArchived": lambda d: "archived the session",
    "MessagePosted": lambda d: f"said: {d['content']}",
    "MessageEdited": lambda d: f"edited a message to: {d['content']}",
    "MessageDeleted": lambda d: "deleted a message",
    "AssistantReplyCompleted": lambda d: f"replied ({d['status']}): {d['content']}",
    "AssistantReplyFailed": lambda d: f"failed to reply ({d['reason']})",
    "DocumentAttached": lambda d: "attached a document",
    "DocumentDetached": lambda d: "detached a document",
    "DocumentDeleted": lambda d: "deleted a document",
    "ConversionRequested": lambda d: f"asked for a {d['target']} conversion",
    "ConversionStarted": lambda d: "started a conversion",
    "ConversionCompleted": lambda d: f"completed a conversion ({d['characters']:,} characters)",
    "ConversionFailed": lambda d: f"failed a conversion ({d['reason']})",
    "ConversionRetried": lambda d: "asked for a conversion again",
}


def _describe_step(step) -> str:  # type: ignore[no-untyped-def]
    text = _STEP_TEXT.get(step.type)
    line = text(step.data) if text else step.type
    return line if len(line) <= 200 else line[:199] + "…"


@audit.command("export", help="Stream events as JSON Lines, filtered, with constant memory.")
@data_dir_option
@click.option("--session", type=click.UUID, default=None)
@click.option("--actor", default=None)
@click.option("--since", default=None, help="ISO-8601 time")
@click.option("--until", default=None, help="ISO-8601 time")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    required=True,
    help="A file, or - for standard output.",
)
def audit_export(data_dir: Path, session: UUID | None, actor: str | None, since: str | None, until: str | None, output: Path) -> None:
    from datetime import datetime

    import msgspec

    from infrastructure.storage.event_store import audit_log, open_event_store

    def moment(value: str | None) -> datetime | None:
        if value is None:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise click.UsageError(f"not an ISO-8601 time: {value}") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

    settings = _existing_settings(data_dir)
    reader = open_event_store(settings, cached=False)
    encode = msgspec.json.Encoder().encode
    written = 0
    started = time.perf_counter()
    try:
        log = audit_log(settings, reader)
        head = log.head()
        after = 0
        to_stdout = str(output) == "-"
        with (
            contextlib.nullcontext(sys.stdout.buffer) if to_stdout else output.open("wb") as out,
            Progress(
                TextColumn("exporting"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[written]:,} written"),
                TimeRemainingColumn(),
                console=console,
            ) as bar,
        ):
            task = bar.add_task("events", total=max(head, 1), written=0)
            while after < head:
                found, after = log.events(after, 1000, session=session, actor=actor, since=moment(since), until=moment(until))
                for item in found:
                    out.write(encode(item) + b"\n")
                written += len(found)
                bar.update(task, completed=min(after, head), written=written)
    finally:
        reader.close()
    elapsed = time.perf_counter() - started
    console.print(f"exported {written:,} events to {'standard output' if str(output) == '-' else output} in {elapsed:.2f}s")


@main.command(
    help="Copy the event log and stored files to DEST, and the data keys and signing key to --keys-to, "
    "while a server may be serving. Keep the two apart: see README, Backups."
)
@data_dir_option
@click.argument("destination", metavar="DEST", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--keys-to",
    "keys_to",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="A new or empty directory, apart from DEST, for the data keys and the signing key.",
)
def backup(data_dir: Path, destination: Path, keys_to: Path) -> None:
    from infrastructure.storage.backup import BackupFailed, BackupRefused, take_backup

    settings = _existing_settings(data_dir)
    if settings.database_url is not None:
        click.echo(_NO_BACKUP_ON_POSTGRES, err=True)
        sys.exit(2)
    try:
        report = take_backup(settings, destination, keys_to)
    except BackupRefused as refused:
        click.echo(f"error: {refused}", err=True)
        sys.exit(2)
    except (BackupFailed, OSError) as error:
        click.echo(f"error: the backup failed, {destination} is incomplete (no manifest: it will not restore): {error}", err=True)
        sys.exit(1)
    click.echo(f"{report.events} events backed up, head position {report.head_position}, head hash {report.head_hash}")
    console.print(
        f"files: {report.files_linked} hard-linked, {report.files_copied} copied; keys (as of position {report.keys_position})"
        + (" and the signing key" if report.secret_key_copied else "")
        + f" in {keys_to}"
    )


@main.command(help="Restore a backup into a new or empty data directory, then rebuild the read models from the log.")
@data_dir_option
@click.argument("source", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option(
    "--keys-from",
    "keys_from",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The keys backup taken with SOURCE (or a newer one).",
)
@click.option(
    "--allow-older-keys",
    is_flag=True,
    help="Accept a keys backup older than SOURCE: what was written after it reads as erased.",
)
def restore(data_dir: Path, source: Path, keys_from: Path, allow_older_keys: bool) -> None:
    from infrastructure.settings import Settings
    from infrastructure.storage.backup import BackupFailed, BackupRefused, restore_backup

    if _logged(Settings.from_env(data_dir, read_only=True)).database_url is not None:
        click.echo(_NO_BACKUP_ON_POSTGRES, err=True)
        sys.exit(2)
    try:
        report = restore_backup(source, keys_from, data_dir, allow_older_keys=allow_older_keys)
    except BackupRefused as refused:
        click.echo(f"error: {refused}", err=True)
        sys.exit(2)
    except (BackupFailed, OSError) as error:
        click.echo(f"error: the restore failed, {data_dir} is left empty: {error}", err=True)
        sys.exit(1)
    click.echo(f"{report.events} events restored, head position {report.head_position}, head hash {report.head_hash}")
    console.print(
        f"{report.files} file(s); erasures re-applied: {report.erasures_applied}, expiries re-applied: {report.expiries_applied}; "
        f"read models rebuilt to position {report.read_models_at}"
    )
    if report.erased_since:
        console.print(
            f"[yellow]erased after this backup[/yellow] (their fields read as erased; erase them again to remove "
            f"their files and accounts): {', '.join(report.erased_since)} — chronicle users erase ID --data-dir {data_dir}"
        )
    if report.missing_files:
        console.print(f"[yellow]warning:[/yellow] {len(report.missing_files)} referenced file(s) are missing from the backup")
        sys.exit(1)


@main.group(help="The PostgreSQL schema: its version, and the upgrade to this Chronicle's.")
def db() -> None:
    pass


def _database(database_url: str | None) -> str:
    from infrastructure.settings import Settings

    if database_url is None:
        click.echo(
            "error: no PostgreSQL database: give --database-url or CHRONICLE_DATABASE_URL (SQLite files have no schema versions)", err=True
        )
        sys.exit(2)
    os.environ["CHRONICLE_DATABASE_URL"] = database_url
    try:
        url = Settings.from_env(read_only=True).database_url
    except ValueError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    assert url is not None
    return url


_db_url = click.option(
    "--database-url", envvar="CHRONICLE_DATABASE_URL", default=None, metavar="postgresql://…", help="(env CHRONICLE_DATABASE_URL)"
)


@db.command("status", help="The schema version the database has, each step applied and when, and what this Chronicle would apply.")
@_db_url
def db_status(database_url: str | None) -> None:
    from infrastructure.storage.postgres_schema import LATEST, SchemaTooNew, connect, status

    with connect(_database(database_url)) as conn:
        found = status(conn)
    table = Table("version", "step", "applied at", "how", "by")
    for step in found.applied:
        table.add_row(str(step.version), step.name, f"{step.applied_at:%Y-%m-%d %H:%M:%S %Z}", step.how, step.applied_by)
    Console().print(table)
    for pending in found.pending:
        click.echo(f"pending: {pending.version} {pending.name}")
    if found.import_source is not None:
        click.echo(f"chronicle migrate from {found.import_source}: {'finished' if found.import_finished else 'NOT finished'}")
    click.echo(f"schema version {found.version}; this Chronicle's is {LATEST}")
    if found.version > LATEST:
        raise SchemaTooNew(f"the database's schema (version {found.version}) is newer than this Chronicle's ({LATEST})")


@db.command("upgrade", help="Apply the schema steps the database lacks (nodes also do this when they start).")
@_db_url
def db_upgrade(database_url: str | None) -> None:
    from infrastructure.storage.postgres_schema import connect, upgrade

    with connect(_database(database_url)) as conn:
        found = upgrade(conn, on_step=lambda step, how: click.echo(f"{how} version {step.version}: {step.name}"))
    click.echo(f"schema version {found.version}")


@main.command(
    help="Copy a SQLite data directory's event log and data keys into an empty PostgreSQL database (see README, "
    "Moving to PostgreSQL). Stop the server first; run it again to resume an interrupted copy."
)
@_data_dir
@click.option(
    "--to", "to", required=True, metavar="postgresql://…", help="The PostgreSQL database to copy into (empty, or an interrupted copy)."
)
@click.option("--batch-size", default=5000, show_default=True, type=click.IntRange(1, 1_000_000), help="Events per transaction.")
def migrate(data_dir: Path, to: str, batch_size: int) -> None:
    from infrastructure.storage.log_migration import MigrationRefused, migrate_log

    if not to.startswith(("postgresql://", "postgres://")):
        click.echo(f"error: --to must be a postgresql:// URL, not {to.split('://')[0]!r}", err=True)
        sys.exit(2)
    started = time.perf_counter()
    with Progress(
        TextColumn("copying events"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>9,.0f} events/s"),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("events", total=None, rate=0.0)

        def advance(done: int, total: int) -> None:
            elapsed = time.perf_counter() - started
            bar.update(task, completed=done, total=max(total, 1), rate=done / elapsed if elapsed else 0.0)

        try:
            report = migrate_log(data_dir.resolve(), to, batch_size=batch_size, progress=advance)
        except MigrationRefused as refused:
            bar.stop()
            click.echo(f"error: {refused}", err=True)
            sys.exit(2)
    resumed = f", resumed after position {report.resumed_after}" if report.resumed_after else ""
    click.echo(
        f"{report.events} events in the database ({report.copied} copied now{resumed}), {report.keys} data keys, "
        f"{report.erased_subjects} erased subjects; head position {report.head_position}, head hash {report.head_hash}; "
        f"{report.seconds:.2f}s ({report.events_per_second:,.0f} events/s)"
    )


_NO_BACKUP_ON_POSTGRES = (
    "error: the event log and the data keys are in PostgreSQL (CHRONICLE_DATABASE_URL): back them up with "
    "PostgreSQL's tools (pg_dump of the database, keeping data_keys apart: see README, PostgreSQL), not chronicle backup/restore"
)


if __name__ == "__main__":
    main()

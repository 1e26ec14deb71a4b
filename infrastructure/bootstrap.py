"""The composition root: the one place that builds Chronicle's runtime, for each of its roles.

- `bootstrap(settings)`: the command line's write side, with the projectors run in a thread of
  the same process (`chronicle users create`, `projections rebuild`, the tests).
- `projection_child(settings, ...)`: the projection process's own part (the log, the read store
  and the projectors; no command bus).
- `ServerRuntime.open(settings, ...)`: the server's, with the projection process and what the web
  layer serves from, and the background work its node runs while it leads the cluster (ADR-043):
  the chat engine, the conversion worker, the retention job and the blob collection after it.
  Every collaborator and every hook is passed in here; the app's lifespan only starts and stops
  what this built, and the web handlers find it in the app's state."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from litestar.channels import ChannelsPlugin
from prometheus_client import REGISTRY

from application import accounts, assistant, chat, documents
from application.assistant import ANSWER_RULES, ReplyRequest, Turn, wants_reply
from application.command_bus import CommandBus
from infrastructure.assistants.local_assistant import LocalAssistant
from infrastructure.assistants.openai_assistant import OpenAIAssistant
from infrastructure.documents.conversion_jobs import ConversionJobs, JobLimits
from infrastructure.documents.media_types import MediaTypeSniffer
from infrastructure.metrics import LEADER
from infrastructure.settings import Settings
from infrastructure.storage.audit_log import AuditLog
from infrastructure.storage.blob_store import BlobStore
from infrastructure.storage.event_store import audit_log, data_keys, event_log, open_event_store
from infrastructure.storage.postgres_notifications import LogNotifications, monotonic_of
from infrastructure.storage.read_store import AioSQLiteReadConnection, SQLiteReadStore
from infrastructure.storage.shadow_rebuild import RebuildStopped, remove_abandoned_shadows
from infrastructure.web.admin_projections import read_statuses
from infrastructure.web.auth import PrincipalCache
from infrastructure.web.dashboard import DashboardSampler
from infrastructure.web.frame_relay import FrameRelay
from infrastructure.web.health import PROJECTION_LAG, ChronicleCollector
from infrastructure.web.quotas import reply_quota_left
from infrastructure.web.read_your_writes import ProjectionProgress
from infrastructure.web.streams import LiveStreams
from infrastructure.workers.blob_collector import BlobCollector, wait_for_projection
from infrastructure.workers.chat_engine import ChatEngine
from infrastructure.workers.conversion_worker import ConversionWorker
from infrastructure.workers.erasure import rebuild_after_erasure
from infrastructure.workers.leadership import Leadership
from infrastructure.workers.projection_process import ProjectionProcess
from infrastructure.workers.projection_runner import ProjectionRunner
from infrastructure.workers.replica_erasures import ReplicaErasures
from infrastructure.workers.retention import RetentionPostponed, apply_retention
from infrastructure.workers.threads import run_in_thread
from infrastructure.write_side import WriteSide
from projections.catalog import all_projectors
from projections.messages import decode_sources, recent_messages
from projections.users import PRINCIPALS_CHANNEL

log = logging.getLogger(__name__)

HANDLERS = {**accounts.HANDLERS, **chat.HANDLERS, **assistant.HANDLERS, **documents.HANDLERS}


def bootstrap(settings: Settings) -> WriteSide:
    """The command line's write side: the projectors run in a thread of this process."""
    app = open_event_store(settings)
    read_store = SQLiteReadStore(settings.read_store_path)
    blobs = BlobStore(settings.blobs_path)
    runner = ProjectionRunner(app, read_store, all_projectors(blobs.read_text))
    bus = CommandBus(app, event_log(app), HANDLERS, on_commit=runner.wake)
    return WriteSide(settings, app, bus, read_store, runner, open_event_store(settings, cached=False), blobs)


def prepare_storage(settings: Settings) -> None:
    """Before a node serves: on PostgreSQL, the schema upgraded to this code's version, or
    `DatabaseRefused` saying why it cannot be used (a newer schema, an unfinished migrate)."""
    if settings.database_url is not None:
        from infrastructure.storage.postgres_schema import prepare_database

        prepare_database(settings.database_url)


def projection_child(
    settings: Settings,
    *,
    on_progress: Callable[[dict[str, int]], None],
    on_publish: Callable[[list[tuple[str, bytes]]], None],
    on_lag: Callable[[float], None],
) -> tuple[ProjectionRunner, Callable[[], None]]:
    """The projection process's runner, and what closes its stores once it has stopped."""
    app = open_event_store(settings)
    read_store = SQLiteReadStore(settings.read_store_path)
    blobs = BlobStore(settings.blobs_path)
    runner = ProjectionRunner(
        app, read_store, all_projectors(blobs.read_text), on_progress=on_progress, on_publish=on_publish, on_lag=on_lag
    )
    notifications = None
    if settings.database_url is not None:  # every node's commits wake this node's runner (ADR-042)
        notifications = LogNotifications(
            settings.database_url,
            on_commit=lambda position, at: runner.wake(position, monotonic_of(at)),
            on_connect=runner.wake,
        )
        notifications.start()

    def close() -> None:
        if notifications is not None:
            notifications.stop()
        read_store.close()
        app.close()

    return runner, close


def assistant_provider(settings: Settings, db: AioSQLiteReadConnection) -> LocalAssistant | OpenAIAssistant:
    """`CHRONICLE_ASSISTANT_PROVIDER`: `local` (default, no network) or `openai`."""
    if settings.assistant_answers not in ANSWER_RULES:
        raise ValueError(f"CHRONICLE_ASSISTANT_ANSWERS must be one of {', '.join(ANSWER_RULES)}, not {settings.assistant_answers!r}")
    if settings.assistant_provider == "local":
        return LocalAssistant(db, settings.assistant_pace)
    if settings.assistant_provider != "openai":
        raise ValueError(f"CHRONICLE_ASSISTANT_PROVIDER must be local or openai, not {settings.assistant_provider!r}")
    if not (settings.llm_base_url and settings.llm_model):
        raise ValueError("the openai provider needs CHRONICLE_LLM_BASE_URL and CHRONICLE_LLM_MODEL")

    async def history(request: ReplyRequest) -> list[Turn]:
        rows = await recent_messages(db, str(request.session_id), request.position, 50)
        return [
            Turn(
                row["role"],
                row["content"],
                row["author_id"],
                row["content_day"],
                tuple(decode_sources(row["sources"]) if row["sources"] else ()),
            )
            for row in rows
        ]

    return OpenAIAssistant(
        settings.llm_base_url,
        settings.llm_model,
        settings.llm_api_key,
        history,
        read_timeout=min(30.0, settings.assistant_timeout),
        context_chars=settings.llm_context_chars,
    )


@dataclass
class ServerRuntime:
    """Everything a serving process runs, built by `open` and started and stopped as one."""

    settings: Settings
    write: WriteSide
    progress: ProjectionProgress
    db: AioSQLiteReadConnection
    principals: PrincipalCache
    engine: ChatEngine
    worker: ConversionWorker
    blob_collector: BlobCollector
    dashboard: DashboardSampler
    live_streams: LiveStreams
    provider: LocalAssistant | OpenAIAssistant
    audit: AuditLog
    sniffer: MediaTypeSniffer
    leadership: Leadership = field(init=False)
    health: ChronicleCollector = field(init=False)
    relay: FrameRelay
    next_retention_run_at: datetime | None = None
    _metrics_registered: bool = False
    _stores: list[SQLiteReadStore] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _background: list[asyncio.Task[None]] = field(default_factory=list)
    _requested: set[asyncio.Task[None]] = field(default_factory=set)
    _stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        node = f"{socket.gethostname()}:{os.getpid()}"
        self.leadership = Leadership(self.settings.database_url, self._lead, node=node)
        self.health = ChronicleCollector(self.write, self.progress, self.leadership)

    @classmethod
    async def open(cls, settings: Settings, channels: ChannelsPlugin) -> ServerRuntime:
        """Builds the server's runtime on the running event loop, wiring every hook; starts nothing."""
        loop = asyncio.get_running_loop()
        app = open_event_store(settings)
        reader = open_event_store(settings, cached=False)
        read_store = SQLiteReadStore(settings.read_store_path)
        if removed := remove_abandoned_shadows(settings.read_store_path):  # a killed rebuild's (ADR-052)
            log.warning("removed %d shadow files a killed rebuild left", removed)
        blobs = BlobStore(settings.blobs_path)
        projectors = all_projectors(blobs.read_text)
        read_store.ensure_schema(projectors)  # before the child starts: it serves queries at once
        if settings.on_postgres and read_store.key_generation() is None:
            read_store.set_key_generation(data_keys(reader).generation())  # a new replica reads with today's keys
        known = read_store.positions()
        progress = ProjectionProgress(
            {p.name: known.get(p.name, 0) for p in projectors},
            settings.read_wait_seconds,
            lambda: anyio.to_thread.run_sync(lambda: reader.recorder.max_notification_id() or 0),
        )
        db = await AioSQLiteReadConnection.open(settings.read_store_path)
        principals = PrincipalCache(db, progress)
        live_streams = LiveStreams(principals, settings.stream_queue_frames)
        keys = data_keys(reader)

        def published(frames: list[tuple[str, bytes]]) -> None:
            """Hands committed frames to the channels plugin (gone once the server is shutting
            down: clients replay the frames from the feed on reconnect), and drops the cached
            principals and data keys of people whose role, state or keys changed."""
            try:
                for channel, body in frames:
                    if channel == PRINCIPALS_CHANNEL:
                        principals.forget(body.decode())
                        keys.forget()  # erased or expired, maybe by another process
                    else:
                        channels.publish(body, channel)
            except RuntimeError:
                pass

        runner = ProjectionProcess(
            settings,
            reader,
            read_store,
            projectors,
            on_progress=progress.update,
            on_publish=published,
            on_lag=PROJECTION_LAG.observe,
            on_restart=live_streams.replay_missed_frames,
        )
        commit_listeners: list[Callable[[], None]] = []

        def committed(position: int) -> None:
            """Runs on the command bus's thread after each commit."""
            runner.wake(position)
            for listener in commit_listeners:
                loop.call_soon_threadsafe(listener)

        bus = CommandBus(app, event_log(app), HANDLERS, on_commit=committed)
        write = WriteSide(settings, app, bus, read_store, runner, reader, blobs)
        provider = assistant_provider(settings, db)
        relay = FrameRelay(
            settings.database_url,
            settings.secret_key,
            lambda channel, body: channels.publish(body, channel),
            on_cancel=lambda session_id, reply_id: engine.cancel(session_id, reply_id),  # the engine, built below, runs on the leader
        )
        stores = [SQLiteReadStore(settings.read_store_path) for _ in range(3)]  # the engine's, the worker's, the collector's
        engine = ChatEngine(
            reader,
            bus,
            stores[0],
            provider,
            relay.publish,
            concurrency=settings.assistant_concurrency,
            timeout_seconds=settings.assistant_timeout,
            may_reply=lambda user_id: reply_quota_left(db, user_id),
            grounded_at=lambda position: progress.wait(("messages", "search", "documents", "document_search"), position),
            answers=lambda content: wants_reply(content, settings.assistant_answers),
        )
        worker = ConversionWorker(
            reader,
            bus,
            stores[1],
            blobs,
            ConversionJobs(
                JobLimits(settings.conversion_timeout, settings.conversion_memory_bytes, settings.conversion_max_unpacked_bytes)
            ),
            concurrency=settings.conversion_concurrency,
        )
        commit_listeners += [engine.wake, worker.wake]
        dashboard = DashboardSampler(lambda: run_in_thread(runner.head), lambda: run_in_thread(read_statuses, write))
        return cls(
            settings=settings,
            write=write,
            progress=progress,
            db=db,
            principals=principals,
            engine=engine,
            worker=worker,
            blob_collector=BlobCollector(blobs, stores[2], runner.head, wait_for_projection(stores[2])),
            dashboard=dashboard,
            live_streams=live_streams,
            provider=provider,
            audit=audit_log(settings, reader),
            sniffer=MediaTypeSniffer(),
            relay=relay,
            _stores=stores,
        )

    def state(self) -> dict[str, Any]:
        """What the web handlers read from the app's state."""
        return {
            "runtime": self,
            "write": self.write,
            "progress": self.progress,
            "db": self.db,
            "principals": self.principals,
            "engine": self.engine,
            "blob_collector": self.blob_collector,
            "dashboard": self.dashboard,
            "live_streams": self.live_streams,
            "audit": self.audit,
            "sniffer": self.sniffer,
            "leadership": self.leadership,
            "relay": self.relay,
        }

    def start(self) -> None:
        """Starts what every node runs, and the competition for the background work: the chat
        engine, the conversion worker and the retention job run while this node leads."""
        loop = asyncio.get_running_loop()
        # Nothing of this node's is in flight before it starts; in a blob directory shared with
        # other nodes, their uploads may be (an upload's file is touched by every write).
        self.write.blobs.forget_incoming(older_than_seconds=3600 if self.settings.blob_dir_shared else 0)
        self.relay.start()
        self.write.runner.start()
        self.write.bus.start()
        LEADER.set(0)
        try:
            REGISTRY.register(self.health)
            self._metrics_registered = True
        except ValueError:  # another app's runtime in this process (in-process tests) reports these
            log.warning("the log and projection metrics are already reported by another app in this process")
        self._tasks = [
            loop.create_task(self.leadership.run(), name="leadership"),
            loop.create_task(self.dashboard.run(), name="dashboard-sampler"),
            loop.create_task(self.live_streams.watch(), name="stream-watch"),
        ]
        # Destroyed keys must leave the read models: other nodes' (ADR-041), and this node's own
        # when the rebuild after an erasure or expiry failed or was cut short by a stop.
        watch = ReplicaErasures(self.write, collect=self.blob_collector.collect, progress=self.rebuild_progress)  # files too
        self._tasks.append(loop.create_task(watch.run(), name="replica-erasures"))

    def rebuild_progress(self, done: int, head: int) -> None:
        """The progress callback of this process's rebuilds: once the server is stopping, it
        ends them at their next batch (ADR-052) instead of holding the stop for minutes."""
        if self._stopping.is_set():
            raise RebuildStopped("the server is stopping")

    def in_background(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Work a request starts and answers before it is done (the rebuild after an erasure, an
        admin's rebuild): the stop ends it before it closes what that work uses."""
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._requested.add(task)
        task.add_done_callback(self._requested.discard)
        return task

    async def stop(self) -> None:
        self._stopping.set()
        tasks = [*self._tasks, *self._requested]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.relay.stop()
        if self._metrics_registered:
            REGISTRY.unregister(self.health)
        await self._lead(False)  # whatever the role was when the leadership task stopped
        await anyio.to_thread.run_sync(self.leadership.close)  # only now may another node lead
        for store in self._stores:
            store.close()
        if isinstance(self.provider, OpenAIAssistant):
            await self.provider.close()
        await self.db.close()
        self.write.close()

    async def _lead(self, leading: bool) -> None:
        """Starts the background work when this node becomes the leader, and stops it (at once,
        abandoning replies and conversions in progress: the next leader does them) when it no
        longer is."""
        LEADER.set(1 if leading else 0)
        if leading:
            self.engine.start()
            self.worker.start()
            self._background = [asyncio.get_running_loop().create_task(self._retention_job(), name="retention")]
            return
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background = []
        self.next_retention_run_at = None
        await self.engine.stop()
        await self.worker.stop()

    async def _retention_job(self) -> None:
        """Every `CHRONICLE_RETENTION_INTERVAL` seconds: erase expired message content, then rebuild."""
        write = self.write
        while True:
            self.next_retention_run_at = datetime.now(UTC) + timedelta(seconds=self.settings.retention_interval)
            await asyncio.sleep(self.settings.retention_interval)
            try:

                def run() -> dict[str, Any]:
                    return apply_retention(
                        write,
                        datetime.now(UTC).date(),
                        lambda command: anyio.from_thread.run(write.bus.execute, command, "retention"),
                    )

                if await run_in_thread(run):
                    await run_in_thread(rebuild_after_erasure, write, lambda: None, self.rebuild_progress)
                    await self.blob_collector.collect_from_loop(list(write.blobs.stored()))
            except RetentionPostponed as postponed:
                log.warning("retention postponed: %s", postponed)
            except RebuildStopped:
                return  # the server is stopping: the key-generation watch rebuilds after the restart
            except Exception:  # noqa: BLE001 - logged; the next round tries again
                log.exception("the retention job failed")

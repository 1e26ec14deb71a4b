"""The app factory: one Litestar app wired to the event store, command bus, projectors and read store."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from litestar import Litestar
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.memory import MemoryChannelsBackend
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import RapidocRenderPlugin

from application.assistant import ANSWER_RULES, ReplyRequest, Turn, wants_reply
from application.chronicle import Chronicle
from application.command_bus import CommandBus
from infrastructure.assistants.local_assistant import LocalAssistant
from infrastructure.assistants.openai_assistant import OpenAIAssistant
from infrastructure.bootstrap import WriteSide, bootstrap
from infrastructure.documents.conversion_jobs import JobLimits
from infrastructure.documents.media_types import MediaTypeSniffer
from infrastructure.metrics import ACTIVE_USERS, ActiveUsers, watch_host
from infrastructure.settings import Settings
from infrastructure.storage.audit_log import AuditLog
from infrastructure.storage.read_store import AioSQLiteReadConnection, SQLiteReadStore
from infrastructure.tracing import request_tracing
from infrastructure.web import (
    accounts,
    admin_projections,
    admin_stats,
    audit,
    documents,
    health,
    messages,
    request_context,
    search,
    sessions,
    streams,
    users,
)
from infrastructure.web.admin_storage import AdminStorageController
from infrastructure.web.allowed_methods import AllowedMethods
from infrastructure.web.audit import ChainVerifications
from infrastructure.web.auth import PrincipalCache, jwt_auth
from infrastructure.web.client_files import ClientBundle, client_file
from infrastructure.web.csrf import csrf_middleware
from infrastructure.web.dashboard import DashboardController, DashboardSampler
from infrastructure.web.http_metrics import HttpMetrics
from infrastructure.web.invitations import AdminLinksController, PublicLinksController
from infrastructure.web.json_bodies import StrictJsonBodies
from infrastructure.web.metrics_endpoint import MetricsController
from infrastructure.web.openapi_document import complete_openapi
from infrastructure.web.problems import exception_handlers
from infrastructure.web.quotas import reply_quota_left
from infrastructure.web.rate_limits import RateLimits
from infrastructure.web.read_your_writes import ProjectionProgress
from infrastructure.workers.blob_collector import BlobCollector, wait_for_projection
from infrastructure.workers.chat_engine import ChatEngine
from infrastructure.workers.conversion_worker import ConversionWorker
from infrastructure.workers.erasure import rebuild_after_erasure
from infrastructure.workers.projection_process import ProjectionProcess
from infrastructure.workers.retention import RetentionPostponed, apply_retention
from projections.messages import recent_messages
from projections.users import PRINCIPALS_CHANNEL

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    auth = jwt_auth(settings.secret_key, settings.token_ttl_seconds)
    channels = ChannelsPlugin(backend=MemoryChannelsBackend(), arbitrary_channels_allowed=True)
    active_users = ActiveUsers()
    ACTIVE_USERS.set_function(active_users.count)
    watch_host(settings.data_dir)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        write = bootstrap(settings)
        write.runner = ProjectionProcess(settings, write.reader, write.read_store, write.runner.projectors)
        progress = ProjectionProgress(
            write.runner.positions(),
            settings.read_wait_seconds,
            lambda: anyio.to_thread.run_sync(write.runner.head),
        )
        write.runner.on_progress = lambda advanced: loop.call_soon_threadsafe(progress.update, advanced)
        db = await AioSQLiteReadConnection.open(settings.read_store_path)
        principals = PrincipalCache(db)
        keys = write.reader.mapper.keys  # type: ignore[attr-defined]

        def forget(user_id: str) -> None:
            principals.forget(user_id)
            keys.forget()  # erased or expired, maybe by another process: drop the cached keys

        write.runner.on_publish = lambda published: loop.call_soon_threadsafe(_publish, channels, forget, published)
        app.state.update(write=write, progress=progress, db=db, principals=principals, jwt=auth, channels=channels)
        provider = assistant_provider(settings, db)
        engine_positions = SQLiteReadStore(settings.read_store_path)
        engine = ChatEngine(
            write.reader,
            write.bus,
            engine_positions,
            provider,
            lambda channel, body: channels.publish(body, channel),
            concurrency=settings.assistant_concurrency,
            timeout_seconds=settings.assistant_timeout,
            may_reply=lambda user_id: reply_quota_left(db, user_id),
            grounded_at=lambda position: progress.wait(("messages", "search", "document_search"), position),
            answers=lambda content: wants_reply(content, settings.assistant_answers),
        )
        app.state.engine = engine
        worker_positions, collector_store = SQLiteReadStore(settings.read_store_path), SQLiteReadStore(settings.read_store_path)
        worker = ConversionWorker(
            write.reader,
            write.bus,
            worker_positions,
            write.blobs,
            JobLimits(settings.conversion_timeout, settings.conversion_memory_bytes, settings.conversion_max_unpacked_bytes),
            concurrency=settings.conversion_concurrency,
        )
        app.state.blob_collector = BlobCollector(write.blobs, collector_store, write.runner.head, wait_for_projection(collector_store))
        app.state.sniffer = MediaTypeSniffer()
        app.state.audit = AuditLog(settings.event_store_path, write.reader.mapper)
        write.blobs.forget_incoming(older_than_seconds=0)  # nothing is in flight before the server starts

        def committed(position: int) -> None:
            write.runner.wake(position)
            loop.call_soon_threadsafe(engine.wake)
            loop.call_soon_threadsafe(worker.wake)

        write.bus.on_commit = committed
        write.runner.on_lag = health.PROJECTION_LAG.observe
        write.runner.on_restart = streams.replay_missed_frames
        write.runner.start()
        write.bus.start()
        engine.start()
        worker.start()
        retention = loop.create_task(_retention_job(app, write, settings), name="retention")
        sampler = DashboardSampler(
            lambda: anyio.to_thread.run_sync(write.runner.head),
            lambda: anyio.to_thread.run_sync(admin_projections.read_statuses, write),
        )
        app.state.dashboard = sampler
        sampling = loop.create_task(sampler.run(), name="dashboard-sampler")
        health.collector.write, health.collector.progress = write, progress
        try:
            yield
        finally:
            retention.cancel()
            sampling.cancel()
            await engine.stop()
            await worker.stop()
            engine_positions.close()
            worker_positions.close()
            collector_store.close()
            if isinstance(provider, OpenAIAssistant):
                await provider.close()
            health.collector.write = health.collector.progress = None
            await db.close()
            write.close()

    def from_state(name: str) -> Provide:
        def provide(state: State) -> Any:
            return state[name]

        return Provide(provide, sync_to_thread=False)

    app = Litestar(
        route_handlers=[
            accounts.AuthController,
            accounts.MeController,
            accounts.AdminUsersController,
            sessions.SessionsController,
            messages.MessagesController,
            messages.RepliesController,
            health.HealthController,
            documents.DocumentsController,
            documents.SessionDocumentsController,
            search.SearchController,
            audit.AuditController,
            admin_projections.AdminProjectionsController,
            admin_stats.AdminStatsController,
            streams.session_stream,
            streams.user_stream,
            MetricsController,
            users.UsersController,
            client_file,
            DashboardController,
            AdminStorageController,
            AdminLinksController,
            PublicLinksController,
        ],
        dependencies={
            "bus": Provide(_bus, sync_to_thread=False),
            "event_store": Provide(_event_store, sync_to_thread=False),
            "write": from_state("write"),
            "db": from_state("db"),
            "progress": from_state("progress"),
        },
        lifespan=[lifespan],
        on_app_init=[auth.on_app_init],
        middleware=[HttpMetrics, csrf_middleware(settings.secret_key)],
        cors_config=CORSConfig(allow_origins=list(settings.cors_origins), allow_credentials=True) if settings.cors_origins else None,
        state=State(
            {
                "client_bundle": ClientBundle(),
                "settings": settings,
                "rate_limits": RateLimits(settings.rate_limits, settings.secret_key),
                "active_users": active_users,
                "verifications": ChainVerifications(),
            }
        ),
        plugins=[channels, *request_tracing(settings)],
        exception_handlers=exception_handlers,
        before_send=[AllowedMethods()],
        before_request=StrictJsonBodies(),
        openapi_config=OpenAPIConfig(
            title="Chronicle",
            version="0.1.0",
            path="/schema",
            render_plugins=[
                RapidocRenderPlugin(js_url="/api-docs/rapidoc-min.js", path=["/", "/rapidoc"], favicon="<link rel='icon' href='data:,'>")
            ],
        ),
    )
    complete_openapi(app, auth.exclude if isinstance(auth.exclude, list) else [auth.exclude or ""])
    return request_context.attach(app, settings.access_log)


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
        return [Turn(row["role"], row["content"], row["author_id"], row["content_day"]) for row in rows]

    return OpenAIAssistant(
        settings.llm_base_url,
        settings.llm_model,
        settings.llm_api_key,
        history,
        read_timeout=min(30.0, settings.assistant_timeout),
        context_chars=settings.llm_context_chars,
    )


async def _retention_job(app: Litestar, write: WriteSide, settings: Settings) -> None:
    """Every `CHRONICLE_RETENTION_INTERVAL` seconds: erase expired message content, then rebuild."""
    while True:
        app.state.next_retention_run_at = datetime.now(UTC) + timedelta(seconds=settings.retention_interval)
        await asyncio.sleep(settings.retention_interval)
        try:

            def run() -> dict[str, Any]:
                return apply_retention(
                    write,
                    write.reader.mapper.keys,
                    settings.retention_days,
                    datetime.now(UTC).date(),  # type: ignore[attr-defined]
                    lambda command: anyio.from_thread.run(write.bus.execute, command, "retention"),
                )

            if await anyio.to_thread.run_sync(run):
                await anyio.to_thread.run_sync(rebuild_after_erasure, write, lambda: None)
                await app.state.blob_collector.collect_from_loop(list(write.blobs.stored()))
        except RetentionPostponed as postponed:
            log.warning("retention postponed: %s", postponed)
        except Exception:  # noqa: BLE001 - logged; the next round tries again
            log.exception("the retention job failed")


def _bus(state: State) -> CommandBus:
    return state.write.bus


def _event_store(state: State) -> Chronicle:
    """For reads in request handlers: the uncached reader, never the command bus's cache."""
    return state.write.reader


def _publish(channels: ChannelsPlugin, forget: Callable[[str], None], published: list[tuple[str, bytes]]) -> None:
    """Runs on the event loop: hands committed frames to the channels plugin (which is gone
    once the server is shutting down; clients replay the frames from the feed on reconnect),
    and drops cached principals whose role or disabled state changed."""
    try:
        for channel, body in published:
            if channel == PRINCIPALS_CHANNEL:
                forget(body.decode())
            else:
                channels.publish(body, channel)
    except RuntimeError:
        pass

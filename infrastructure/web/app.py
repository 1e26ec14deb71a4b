"""The app factory: registers the routes, middleware, hooks and plugins of the HTTP API on one
Litestar app; its lifespan starts and stops the runtime the composition root
(`infrastructure.bootstrap.ServerRuntime`) builds."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.memory import MemoryChannelsBackend
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import RapidocRenderPlugin

from application.chronicle import Chronicle
from application.command_bus import CommandBus
from infrastructure.bootstrap import ServerRuntime
from infrastructure.metrics import ACTIVE_USERS, ActiveUsers, watch_host
from infrastructure.settings import Settings
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
from infrastructure.web.auth import jwt_auth
from infrastructure.web.client_files import ClientBundle, client_file
from infrastructure.web.csrf import csrf_middleware
from infrastructure.web.dashboard import DashboardController
from infrastructure.web.invitations import AdminLinksController, PublicLinksController
from infrastructure.web.json_bodies import StrictJsonBodies
from infrastructure.web.metrics_endpoint import MetricsController
from infrastructure.web.openapi_document import complete_openapi
from infrastructure.web.problems import exception_handlers
from infrastructure.web.rate_limits import RateLimits

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
        """Starts what the composition root built, and stops it: nothing is wired here."""
        runtime = await ServerRuntime.open(settings, channels)
        app.state.update(runtime.state())
        runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

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
        middleware=[csrf_middleware(settings.secret_key)],
        cors_config=CORSConfig(allow_origins=list(settings.cors_origins), allow_credentials=True) if settings.cors_origins else None,
        state=State(
            {
                "client_bundle": ClientBundle(),
                "settings": settings,
                "rate_limits": RateLimits(settings.rate_limits, settings.secret_key),
                "active_users": active_users,
                "verifications": ChainVerifications(),
                "jwt": auth,
                "channels": channels,
            }
        ),
        plugins=[channels, *request_tracing(settings)],
        exception_handlers=exception_handlers,
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
    app.asgi_handler = AllowedMethods(app.asgi_handler)
    return request_context.attach(app, settings.access_log)


def _bus(state: State) -> CommandBus:
    return state.write.bus


def _event_store(state: State) -> Chronicle:
    """For reads in request handlers: the uncached reader, never the command bus's cache."""
    return state.write.reader

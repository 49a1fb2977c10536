"""Wiring of the gateway service: settings, runtime, routes, lifespan. No logic here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from services.gateway.browser import SecurityHeadersMiddleware, install_local_docs
from services.gateway.deps import Gateway
from services.gateway.downstream import Downstreams
from services.gateway.eventlog import Frame
from services.gateway.fanout import Hub
from services.gateway.handlers import build_handlers, identity_events
from services.gateway.identity import TokenVerifier
from services.gateway.metrics import GatewayMetrics, MetricsMiddleware
from services.gateway.openapi import install_openapi, load_auth_document
from services.gateway.routes import (
    admin,
    artifacts,
    auth_proxy,
    deployments,
    invitations,
    openai,
    ops,
    projects,
    runs,
    secrets,
    serving,
    specs,
    webhooks,
)
from services.gateway.routes.web import WebUI
from services.gateway.sessions import SessionRegistry
from services.gateway.settings import GatewaySettings
from services.gateway.webhook_sender import WebhookSender
from services.gateway.webhooks import WebhookKey
from services.gateway.writer import LogWriter
from services.gateway.ws import router as ws_router
from services.gateway.wsguard import SessionGuard
from shared.bus import Bus
from shared.events import MembershipChanged, SessionsRevoked, SigningKeyRevoked
from shared.limits import install_body_limits
from shared.runtime import ServiceRuntime, health_router
from shared.secrets import KeyService, SecretStore
from shared.service.app import two_phase
from shared.service.http_errors import install_error_handlers

__all__ = ["create_app"]

MIGRATIONS = Path(__file__).parent / "migrations"
#: stored events that may have staged webhook deliveries (the sender looks at once)
_NOTIFYING = frozenset(
    {"TrainingCompleted", "ModelDeployed", "RunCancelled"}
    | {"NodesFailed", "ArtifactsFailed", "TrainingFailed", "DeploymentFailed"}
)


def create_app(
    settings: GatewaySettings | None = None,
    *,
    bus: Bus | None = None,
    vault: tuple[SecretStore, KeyService] | None = None,
) -> FastAPI:
    """Build the gateway service's ASGI app; resources open in its lifespan."""
    settings = settings or GatewaySettings()
    # events are stored in delivery order by the group-committing LogWriter; the prefetch
    # bounds how many wait in one batch (see services/gateway/writer.py)
    runtime = ServiceRuntime(
        settings, migrations=[MIGRATIONS], bus=bus, vault=vault, prefetch=settings.event_prefetch
    )
    metrics = GatewayMetrics()
    hub = Hub(runtime.db, poll_interval=settings.ws_poll_interval)

    webhook_key = WebhookKey(lambda: runtime.secrets)
    webhook_sender = WebhookSender(runtime.db, webhook_key, settings)

    def stored(frame: Frame) -> None:
        metrics.stored.inc()
        hub.dispatch(frame)
        if frame.event_type in _NOTIFYING:
            webhook_sender.wake()  # its deliveries committed with it

    writer = LogWriter(runtime.db, on_stored=stored)
    downstream = Downstreams(
        auth=settings.auth_url,
        fetcher=settings.fetcher_url,
        trainer=settings.trainer_url,
        provisioner=settings.provisioner_url,
        timeout=settings.downstream_timeout,
        credentials=lambda: runtime.service_auth.credentials,
    )
    sessions = SessionRegistry(downstream.auth, cache_seconds=settings.revocation_cache_seconds)
    verifier = TokenVerifier(
        downstream.auth,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        jwks_refresh_seconds=settings.jwks_refresh_seconds,
        api_token_cache_seconds=settings.api_token_cache_seconds,
        sessions=sessions,
        access_token_ttl_seconds=settings.access_token_ttl_seconds,
        leeway_seconds=settings.jwt_leeway_seconds,
    )
    guard = SessionGuard(verifier, runtime.db)
    sessions.listen(guard.on_revoked)
    gateway = Gateway(
        settings=settings,
        runtime=runtime,
        verifier=verifier,
        downstream=downstream,
        hub=hub,
        metrics=metrics,
        guard=guard,
    )
    runtime.on(build_handlers(writer))

    async def auth_reachable() -> bool:
        response = await downstream.auth.request("GET", "/api/auth/jwks")
        return response.status_code == 200

    runtime.extra_checks["auth"] = auth_reachable

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def wire() -> None:
            """The event log writer runs before the first status event is delivered."""
            runtime.spawn(writer.run(), name="event-log-writer")
            runtime.spawn(load_auth_document(app, downstream.auth), name="auth-openapi")
            runtime.spawn(hub.poll_forever(), name="ws-poll")
            runtime.spawn(webhook_sender.run_forever(), name="webhook-sender")
            runtime.spawn(
                verifier.refresh_jwks_forever(settings.jwks_refresh_interval), name="jwks-refresh"
            )
            # every replica hears every revocation and role change (its own queue)
            await runtime.bus.subscribe_broadcast(
                [
                    SessionsRevoked.event_type(),
                    SigningKeyRevoked.event_type(),
                    MembershipChanged.event_type(),
                ],
                identity_events(sessions, guard),
            )

        async with two_phase(runtime, wire):
            try:
                yield
            finally:
                await downstream.close()

    app = FastAPI(
        title="aidp",
        version="1",
        description="AI Deployment Platform API (docs/design.md §5).",
        openapi_url="/api/openapi.json",
        docs_url=None,  # served from packaged assets below (install_local_docs)
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.gateway = gateway
    app.state.webhook_key = webhook_key
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    install_body_limits(app, settings, upload_paths={"/api/uploads"})
    if settings.cors_allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allowed_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            allow_credentials=False,
        )
    for module in (
        auth_proxy, secrets, projects, invitations, runs, artifacts, serving, deployments, openai,
        ops, admin, webhooks, specs,
    ):  # fmt: skip
        app.include_router(module.router)
    app.include_router(ws_router)
    app.include_router(health_router(lambda request: request.app.state.runtime))
    install_openapi(app)
    install_local_docs(app, openapi_url="/api/openapi.json")
    web = WebUI.load(settings.web_dist)
    # unknown GET paths are the web UI's (its client-side routes) before they are a 404
    install_error_handlers(app, fallback=web.response if web else None)
    # outermost: every answer carries the headers, a 413 and an error page included
    app.add_middleware(SecurityHeadersMiddleware, tls=settings.tls_cert is not None)
    return app

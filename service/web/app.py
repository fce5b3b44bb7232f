"""create_app(deps) -> the ASGI application: the route table and middleware, nothing else."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from fastapi import Depends, FastAPI
from starlette.exceptions import HTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from service import __version__
from service.web.headers import SecurityHeaders
from service.web.limits import BodySizeLimit
from service.web.published import PublishedViews
from service.web.routes import Handlers, WebDeps
from service.web.subscriptions import API_PATH, SubscriptionAccepted, SubscriptionHandlers

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]
_GET = ["GET", "HEAD"]


def create_app(deps: WebDeps, lifespan: Lifespan | None = None, title: str = "Announcements") -> FastAPI:
    """Build the HTTP application around already-constructed dependencies."""
    app = FastAPI(
        title=title,
        version=__version__,
        lifespan=lifespan,
        docs_url="/api/docs",
        redoc_url=None,
        # No OpenTelemetry here (metrics are Prometheus): otherwise FastAPI looks up its providers,
        # environment included, on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    h = Handlers(deps)
    route = app.add_api_route
    # Feeds, archive pages and permalinks are answered by PublishedViews before routing (below).
    route(
        "/announcements/{release_id}/attachments/{name}",
        h.attachment,
        methods=_GET,
        name="attachment",
        include_in_schema=False,
    )
    route(
        "/healthz", h.healthz, methods=["GET"], tags=["operations"], summary="Liveness and database check",
        responses={503: {"description": "The database does not answer"}},
    )  # fmt: skip
    route("/healthz", h.healthz, methods=["HEAD"], include_in_schema=False)  # one operationId per method
    # PlainTextResponse documents what it serves (the Prometheus text format), not JSON.
    route(
        "/metrics", h.metrics, methods=["GET"], tags=["operations"], summary="Prometheus metrics",
        response_class=PlainTextResponse,
    )  # fmt: skip
    s = SubscriptionHandlers(deps)
    for path, page, methods, name in (
        ("/subscribe", s.subscribe_form, _GET, "subscribe_form"),
        ("/subscribe", s.subscribe, ["POST"], "subscribe"),
        # GET only: a HEAD (link checkers) must not confirm.
        ("/confirm/{token}", s.confirm, ["GET"], "confirm"),
        ("/unsubscribe/{token}", s.unsubscribe_page, _GET, "unsubscribe_page"),
        ("/unsubscribe/{token}", s.unsubscribe, ["POST"], "unsubscribe"),
        ("/preferences/{token}", s.preferences_page, _GET, "preferences_page"),
        ("/preferences/{token}", s.save_preferences, ["POST"], "save_preferences"),
    ):
        route(path, page, methods=methods, name=name, include_in_schema=False)
    route(
        API_PATH,
        s.api_subscribe,
        methods=["POST"],
        status_code=202,
        response_model=SubscriptionAccepted,
        dependencies=[Depends(s.api_rate_limit)],
        tags=["subscriptions"],
        summary="Request an email subscription (double opt-in)",
        responses={
            400: {"description": "The request body cannot be read as JSON (e.g. not UTF-8)"},
            413: {"description": "The request body is larger than max_request_bytes"},
            429: {"description": "Too many requests from this client: see the Retry-After header"},
        },
    )

    async def not_found(_: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException) and exc.status_code != 404:
            return Response(str(exc.detail), status_code=exc.status_code, headers=exc.headers)
        return h.not_found()

    app.add_exception_handler(404, not_found)
    app.add_exception_handler(405, not_found)
    # Outermost last. PublishedViews answers feeds and pages before the others run: it compresses
    # its own bodies, reads none and adds the security headers itself; SecurityHeaders covers the
    # rest, 413s included.
    app.add_middleware(GZipMiddleware, minimum_size=500)
    app.add_middleware(BodySizeLimit, max_bytes=deps.max_request_bytes)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(PublishedViews, views=deps.views, metrics=deps.metrics)
    return app

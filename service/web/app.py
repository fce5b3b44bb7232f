"""create_app(deps) -> the ASGI application: the route table and middleware, nothing else."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from fastapi import Depends, FastAPI
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import Response

from service import __version__
from service.render.site import FeedKind
from service.web.headers import SecurityHeaders
from service.web.routes import Handlers, WebDeps
from service.web.subscriptions import API_PATH, SubscriptionAccepted, SubscriptionHandlers

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]
_GET = ["GET", "HEAD"]


class _FeedKindConvertor(Convertor[str]):
    """Matches only the feed extensions we serve, so /feed.xml is a plain 404."""

    regex = "|".join(kind.value for kind in FeedKind)

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("feedkind", _FeedKindConvertor())


def create_app(deps: WebDeps, lifespan: Lifespan | None = None, title: str = "Announcements") -> FastAPI:
    """Build the HTTP application around already-constructed dependencies."""
    app = FastAPI(title=title, version=__version__, lifespan=lifespan, docs_url="/api/docs", redoc_url=None)
    h = Handlers(deps)
    route = app.add_api_route
    for path, endpoint, name in (
        ("/", h.archive, "archive"),
        ("/page/{number:int}", h.archive, "archive_page"),
        ("/topics/{topic}/", h.archive, "topic_archive"),
        ("/topics/{topic}/page/{number:int}", h.archive, "topic_archive_page"),
        ("/feed.{kind:feedkind}", h.feed, "feed"),
        ("/topics/{topic}/feed.{kind:feedkind}", h.feed, "topic_feed"),
        ("/{language}/feed.{kind:feedkind}", h.feed, "language_feed"),
        ("/announcements/{release_id}", h.announcement, "announcement"),
        ("/announcements/{release_id}/attachments/{name}", h.attachment, "attachment"),
    ):
        route(path, endpoint, methods=_GET, name=name, include_in_schema=False)
    route("/healthz", h.healthz, methods=["GET"], tags=["operations"], summary="Liveness and database check")
    route("/healthz", h.healthz, methods=["HEAD"], include_in_schema=False)  # one operationId per method
    route("/metrics", h.metrics, methods=["GET"], tags=["operations"], summary="Prometheus metrics")
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
        responses={429: {"description": "Too many requests from this client: see the Retry-After header"}},
    )

    async def not_found(_: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException) and exc.status_code != 404:
            return Response(str(exc.detail), status_code=exc.status_code, headers=exc.headers)
        return h.not_found()

    app.add_exception_handler(404, not_found)
    app.add_exception_handler(405, not_found)
    app.add_middleware(GZipMiddleware, minimum_size=500)
    app.add_middleware(SecurityHeaders)
    return app

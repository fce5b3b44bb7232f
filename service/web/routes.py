"""Public HTTP handlers besides the published pages and feeds (service.web.published): attachments,
health and metrics."""

from __future__ import annotations

import json
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from service.audience import Audience
from service.clock import Clock
from service.errors import StoreError
from service.metrics import CONTENT_TYPE, Metrics
from service.render.pages import PageRenderer
from service.render.site import Site
from service.store.database import Database
from service.store.sources import Sources
from service.tokens import Tokens
from service.views import HTML, Views


@dataclass(frozen=True, slots=True)
class WebDeps:
    """What the HTTP layer needs, built once by the runtime."""

    views: Views
    database: Database
    sources: Sources
    metrics: Metrics
    # Subscriptions (service.web.subscriptions)
    audience: Audience
    tokens: Tokens  # only to make the preferences link shown after confirming
    pages: PageRenderer
    site: Site
    clock: Clock  # the rate limit's time
    csrf_secret: bytes  # service.web.subscriptions.csrf_key(): never the token signing key itself
    subscribe_rate_limit: int  # requests per client per minute
    link_rate_limit: int = 60  # confirm, unsubscribe and preferences requests per client per minute
    max_request_bytes: int = 32_768  # larger request bodies are refused with 413


class Handlers:
    """Request handlers bound to their dependencies."""

    def __init__(self, deps: WebDeps) -> None:
        self.deps = deps

    def not_found(self) -> Response:
        """The 404 page."""
        return Response(self.deps.views.not_found(), status_code=404, media_type=HTML)

    async def attachment(self, request: Request) -> Response:
        """GET /announcements/{id}/attachments/{name}: only files the release lists."""
        found = await self.deps.views.attachment(
            request.path_params["release_id"], request.path_params["name"]
        )
        if found is None:
            return self.not_found()
        path, item = found
        return FileResponse(path, media_type=item.content_type, filename=item.name)

    async def healthz(self, _: Request) -> Response:
        """Liveness and database check, with the files currently refused."""
        try:
            await self.deps.database.ping()
            problems = await self.deps.sources.problems()
        except StoreError as exc:
            return _json({"status": "error", "database": str(exc)}, 503)
        return _json(
            {
                "status": "ok",
                "database": "ok",
                "file_problems": [
                    {"file": p.source, "line": p.line, "reason": p.reason, "hint": p.hint} for p in problems
                ],
            },
            200,
        )

    async def metrics(self, _: Request) -> Response:
        """Prometheus text exposition."""
        return Response(self.deps.metrics.render(), media_type=CONTENT_TYPE)


def _json(data: object, status: int) -> Response:
    return Response(json.dumps(data, ensure_ascii=False), status_code=status, media_type="application/json")

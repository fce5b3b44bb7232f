"""HTTP validators: ETag / Last-Modified on every response, 304 when the client is current."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from starlette.requests import Request
from starlette.responses import Response

from service.metrics import Metrics
from service.views import Rendered

CACHE_CONTROL = "public, max-age=60"


def _etag_matches(header: str, etag: str) -> bool:
    # Weak comparison (RFC 9110 13.1.2): W/ prefixes are ignored on both sides.
    if header.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == wanted for tag in header.split(","))


def _not_modified_since(header: str, last_modified: datetime) -> bool:
    try:
        since = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return False
    if since.tzinfo is None:
        return False
    return last_modified.replace(microsecond=0) <= since


def is_fresh(request: Request, etag: str, last_modified: datetime) -> bool:
    """True when the client's cached copy is current (If-None-Match wins over If-Modified-Since)."""
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        return _etag_matches(if_none_match, etag)
    if_modified_since = request.headers.get("if-modified-since")
    return if_modified_since is not None and _not_modified_since(if_modified_since, last_modified)


def respond(request: Request, rendered: Rendered, metrics: Metrics, kind: str) -> Response:
    """A 200 with validators, or a bodiless 304 when the client already has these bytes."""
    headers = {
        "ETag": rendered.etag,
        "Last-Modified": format_datetime(rendered.last_modified.astimezone(UTC), usegmt=True),
        "Cache-Control": CACHE_CONTROL,
    }
    if is_fresh(request, rendered.etag, rendered.last_modified):
        metrics.not_modified.labels(kind=kind).inc()
        # The gzip middleware only adds Vary to bodies it compresses; a 304 must still carry it.
        return Response(status_code=304, headers={**headers, "Vary": "Accept-Encoding"})
    return Response(rendered.body, media_type=rendered.media_type, headers=headers)

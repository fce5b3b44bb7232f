"""The published site over HTTP: feeds, archive pages and permalinks, straight from the view cache.

These are the requests that come in volume (feed readers poll every few minutes) and the answer is
always a cached `Rendered`, so they skip the framework: one regular expression picks the view, the
validators decide between 200 and 304, and the bytes go out with a gzip copy made once per body.
Everything else (forms, the API, attachments, health) falls through to the FastAPI application.
"""

from __future__ import annotations

import gzip
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from starlette.types import ASGIApp, Receive, Scope, Send

from service.metrics import Metrics
from service.render.site import FeedKind, Site
from service.views import Rendered, Views

CACHE_CONTROL = b"public, max-age=60"
_GZIP_MIN_BYTES = 500  # smaller bodies gain nothing from compression
_GZIP_CACHE_SIZE = 256
_METHODS = ("GET", "HEAD")
_SLUG = r"[^/]+"  # Views refuses anything that is not a valid id or topic: a 404, never a lookup
_FEED = "|".join(kind.value for kind in FeedKind)

Handler = Callable[[dict[str, str]], Awaitable[Rendered | str | None]]


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


def is_fresh(if_none_match: str | None, if_modified_since: str | None, rendered: Rendered) -> bool:
    """True when the client's cached copy is current (If-None-Match wins over If-Modified-Since)."""
    if if_none_match is not None:
        return _etag_matches(if_none_match, rendered.etag)
    return if_modified_since is not None and _not_modified_since(if_modified_since, rendered.last_modified)


def accepts_gzip(accept_encoding: str) -> bool:
    """True when the Accept-Encoding header allows gzip (an explicit q=0 refuses it)."""
    for item in accept_encoding.split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() in ("gzip", "x-gzip"):
            quality = params.strip().lower().removeprefix("q=")
            try:
                return not params.strip() or float(quality) > 0
            except ValueError:
                return False
    return False


# (pattern, handler method, metric kind): first match wins. A handler answers with a body, a path to
# redirect to, or None for the 404 page.
_ROUTES = [
    (re.compile(pattern), method, kind)
    for pattern, method, kind in (
        (rf"/feed\.(?P<kind>{_FEED})", "feed", "feed"),
        (rf"/topics/(?P<topic>{_SLUG})/feed\.(?P<kind>{_FEED})", "feed", "feed"),
        (rf"/(?P<language>{_SLUG})/feed\.(?P<kind>{_FEED})", "feed", "feed"),
        (r"/", "archive", "page"),
        (r"/page/(?P<number>[0-9]{1,9})", "archive", "page"),
        (rf"/topics/(?P<topic>{_SLUG})/", "archive", "page"),
        (rf"/topics/(?P<topic>{_SLUG})/page/(?P<number>[0-9]{{1,9}})", "archive", "page"),
        (rf"/topics/(?P<topic>{_SLUG})", "topic_without_slash", "page"),
        (rf"/announcements/(?P<release_id>{_SLUG})", "announcement", "page"),
    )
]


class PublishedViews:
    """ASGI middleware answering GET and HEAD for the published site; other requests go to `app`."""

    def __init__(self, app: ASGIApp, views: Views, metrics: Metrics) -> None:
        self.app = app
        self.views = views
        self.metrics = metrics
        # Label lookups are a dict walk and a lock per call: bind each counter once.
        self.feed_counters = {kind: metrics.feed_requests.labels(format=kind.value) for kind in FeedKind}
        self._not_modified = {kind: metrics.not_modified.labels(kind=kind) for kind in ("feed", "page")}
        self._gzipped: OrderedDict[str, bytes] = OrderedDict()
        self._routes: list[tuple[re.Pattern[str], Handler, str]] = [
            (pattern, getattr(self, method), kind) for pattern, method, kind in _ROUTES
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            for pattern, handler, kind in self._routes:
                if (match := pattern.fullmatch(path)) is not None:
                    if scope["method"] not in _METHODS:
                        await _method_not_allowed(send)
                        return
                    answer = await handler(match.groupdict())
                    await self._send(scope, send, answer, kind)
                    return
        await self.app(scope, receive, send)

    async def _send(self, scope: Scope, send: Send, answer: Rendered | str | None, kind: str) -> None:
        if answer is None:
            body, status = self.views.not_found(), 404
            headers = [(b"content-type", b"text/html; charset=utf-8")]
        elif isinstance(answer, str):
            body, status = b"", 301
            headers = [(b"location", answer.encode())]
        else:
            request = dict(scope["headers"])
            headers = [
                (b"etag", answer.etag.encode()),
                (b"last-modified", _http_date(answer.last_modified)),
                (b"cache-control", CACHE_CONTROL),
                (b"vary", b"Accept-Encoding"),
            ]
            inm, ims = request.get(b"if-none-match"), request.get(b"if-modified-since")
            if is_fresh(inm and inm.decode("latin-1"), ims and ims.decode("latin-1"), answer):
                self._not_modified[kind].inc()
                body, status = b"", 304
            else:
                body, status = answer.body, 200
                headers.append((b"content-type", answer.media_type.encode()))
                if len(body) >= _GZIP_MIN_BYTES and accepts_gzip(
                    request.get(b"accept-encoding", b"").decode("latin-1")
                ):
                    body = self._gzip(answer)
                    headers.append((b"content-encoding", b"gzip"))
        if status != 304:
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    async def feed(self, params: dict[str, str]) -> Rendered | None:
        """/feed.{kind}, /topics/{topic}/feed.{kind} and /{language}/feed.{kind}."""
        kind = FeedKind(params["kind"])
        self.feed_counters[kind].inc()
        return await self.views.feed(kind, params.get("topic"), params.get("language"))

    async def archive(self, params: dict[str, str]) -> Rendered | str | None:
        """/, /page/{n}, /topics/{topic}/ and /topics/{topic}/page/{n}; page 1 has one URL."""
        number, topic = int(params.get("number", "1")), params.get("topic")
        if number == 1 and "number" in params:
            return Site.archive_path(1, topic)
        return await self.views.archive(number, topic)

    async def topic_without_slash(self, params: dict[str, str]) -> str:
        """/topics/{topic}: the topic's archive is /topics/{topic}/."""
        return Site.archive_path(1, params["topic"])

    async def announcement(self, params: dict[str, str]) -> Rendered | None:
        """/announcements/{id}: a release's permalink page."""
        return await self.views.announcement(params["release_id"])

    def _gzip(self, rendered: Rendered) -> bytes:
        # Compressed once per body (the ETag names the bytes), not once per request.
        found = self._gzipped.get(rendered.etag)
        if found is None:
            found = gzip.compress(rendered.body, compresslevel=9, mtime=0)
            self._gzipped[rendered.etag] = found
            if len(self._gzipped) > _GZIP_CACHE_SIZE:
                self._gzipped.popitem(last=False)
        else:
            self._gzipped.move_to_end(rendered.etag)
        return found


async def _method_not_allowed(send: Send) -> None:
    body = b"Method Not Allowed"
    headers = [(b"allow", b"GET, HEAD"), (b"content-type", b"text/plain; charset=utf-8")]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": 405, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _http_date(moment: datetime) -> bytes:
    return format_datetime(moment.astimezone(UTC), usegmt=True).encode()

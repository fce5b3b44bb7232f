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
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from starlette.types import ASGIApp, Receive, Scope, Send

from service.metrics import Metrics
from service.render.site import FeedKind, Site
from service.views import Rendered, Views
from service.web.headers import FILE_HEADERS, HTML_HEADERS

CACHE_CONTROL = b"public, max-age=60"
_GZIP_MIN_BYTES = 500  # smaller bodies gain nothing from compression
_PREPARED_CACHE_SIZE = 256
_HTML_404 = [(b"content-type", b"text/html; charset=utf-8"), *HTML_HEADERS]
_REDIRECT = [(b"content-length", b"0"), *FILE_HEADERS]
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


@dataclass(frozen=True, slots=True)
class _Prepared:
    """What is sent for one rendered body: its header lists, and its gzip copy if worth one."""

    headers: list[tuple[bytes, bytes]]
    not_modified: list[tuple[bytes, bytes]]
    gzipped: bytes | None
    gzip_headers: list[tuple[bytes, bytes]]

    @classmethod
    def of(cls, rendered: Rendered) -> _Prepared:
        """Prepare `rendered`: validators, security headers, and gzip for bodies worth compressing."""
        html = rendered.media_type.startswith("text/html")
        validators = [
            (b"etag", rendered.etag.encode()),
            (b"last-modified", _http_date(rendered.last_modified)),
            (b"cache-control", CACHE_CONTROL),
            (b"vary", b"Accept-Encoding"),
            *(HTML_HEADERS if html else FILE_HEADERS),
        ]
        entity = [*validators, (b"content-type", rendered.media_type.encode())]
        gzipped = None
        if len(rendered.body) >= _GZIP_MIN_BYTES:
            gzipped = gzip.compress(rendered.body, compresslevel=9, mtime=0)
        return cls(
            headers=[*entity, (b"content-length", str(len(rendered.body)).encode())],
            not_modified=validators,
            gzipped=gzipped,
            gzip_headers=[
                *entity,
                (b"content-encoding", b"gzip"),
                (b"content-length", str(len(gzipped or b"")).encode()),
            ],
        )


class PublishedViews:
    """ASGI middleware answering GET and HEAD for the published site; other requests go to `app`.

    It is the outermost of the app's own middleware and adds the security headers itself
    (service.web.headers), so a feed request passes through nothing else.
    """

    def __init__(self, app: ASGIApp, views: Views, metrics: Metrics) -> None:
        self.app = app
        self.views = views
        # Label lookups are a dict walk and a lock per call: bind each counter once.
        self.feed_counters = {kind: metrics.feed_requests.labels(format=kind.value) for kind in FeedKind}
        self._not_modified = {kind: metrics.not_modified.labels(kind=kind) for kind in ("feed", "page")}
        self._prepared: OrderedDict[str, _Prepared] = OrderedDict()
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
            body = self.views.not_found()
            status, headers = 404, [*_HTML_404, (b"content-length", str(len(body)).encode())]
        elif isinstance(answer, str):
            body = b""
            status, headers = 301, [(b"location", answer.encode()), *_REDIRECT]
        else:
            request = dict(scope["headers"])
            ready = self._prepare(answer)
            inm, ims = request.get(b"if-none-match"), request.get(b"if-modified-since")
            if is_fresh(inm and inm.decode("latin-1"), ims and ims.decode("latin-1"), answer):
                self._not_modified[kind].inc()
                body, status, headers = b"", 304, ready.not_modified
            elif ready.gzipped is not None and accepts_gzip(
                request.get(b"accept-encoding", b"").decode("latin-1")
            ):
                body, status, headers = ready.gzipped, 200, ready.gzip_headers
            else:
                body, status, headers = answer.body, 200, ready.headers
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    def _prepare(self, rendered: Rendered) -> _Prepared:
        # Headers and the gzip copy are made once per body (the ETag names the bytes), not per request.
        found = self._prepared.get(rendered.etag)
        if found is None:
            found = _Prepared.of(rendered)
            self._prepared[rendered.etag] = found
            if len(self._prepared) > _PREPARED_CACHE_SIZE:
                self._prepared.popitem(last=False)
        else:
            self._prepared.move_to_end(rendered.etag)
        return found

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


async def _method_not_allowed(send: Send) -> None:
    body = b"Method Not Allowed"
    headers = [(b"allow", b"GET, HEAD"), (b"content-type", b"text/plain; charset=utf-8"), *FILE_HEADERS]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": 405, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _http_date(moment: datetime) -> bytes:
    return format_datetime(moment.astimezone(UTC), usegmt=True).encode()

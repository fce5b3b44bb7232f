"""Helpers for the HTTP tests: sample releases, feed and HTML readers, metrics, raw ASGI requests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import feedparser
import httpx
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import ASGIApp, Message

from service import jobs
from service.models import ScanReport
from service.runtime import Components, make_app
from tests.conftest import Inbox

BASE_URL = "https://press.example.org"  # tests.conftest.make_settings
FEED_TYPES = {"rss": "application/rss+xml", "atom": "application/atom+xml", "json": "application/feed+json"}
KINDS = list(FEED_TYPES)
HTML = "text/html; charset=utf-8"

# File names sort differently from dates, so "newest first" cannot come from the file order.
SAMPLE = (
    ("alpha.md", "Alpha opens a lab", "2026-11-10", ["awards"]),
    ("bravo.md", "Bravo wins a prize", "2026-11-20", ["research", "awards"]),
    ("charlie.md", "Charlie publishes a study", "2026-11-01", ["research"]),
)
NEWEST_FIRST = ["bravo", "alpha", "charlie"]
BY_TOPIC = {"research": ["bravo", "charlie"], "awards": ["bravo", "alpha"]}


def write_sample(inbox: Inbox) -> None:
    """Three releases on two topics, out of date order by file name."""
    for name, title, date, topics in SAMPLE:
        inbox.release(name, title=title, date=date, topics=topics, body=f"Body of {title}.")


def write_dated(inbox: Inbox, count: int) -> list[str]:
    """`count` releases named r01.. on consecutive days; returns their ids newest first."""
    ids = [f"r{n:02d}" for n in range(1, count + 1)]
    for n, release_id in enumerate(ids, start=1):
        inbox.release(f"{release_id}.md", title=f"Release {n}", date=f"2026-10-{n:02d}", topics=["series"])
    return ids[::-1]


async def scan(parts: Components) -> ScanReport:
    """One pass of the real scanner over the inbox."""
    return await jobs.scan(parts.jobs)


def permalink(release_id: str) -> str:
    return f"{BASE_URL}/announcements/{release_id}"


def release_id_of(url: str) -> str:
    assert url.startswith(f"{BASE_URL}/announcements/"), url
    return url.rsplit("/", 1)[1]


def parse_xml_feed(body: bytes) -> Any:
    """feedparser's reading of an RSS/Atom document, which must be well formed."""
    parsed = feedparser.parse(body)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    return parsed


def feed_ids(kind: str, body: bytes) -> list[str]:
    """Release ids of a feed's entries, in document order."""
    if kind == "json":
        data = json.loads(body)
        assert data["version"] == "https://jsonfeed.org/version/1.1"
        return [release_id_of(item["url"]) for item in data["items"]]
    return [release_id_of(entry.link) for entry in parse_xml_feed(body).entries]


@dataclass
class Page:
    """What html.parser saw in a document: every start tag, the text inside each tag, script bodies."""

    elements: list[tuple[str, dict[str, str | None]]] = field(default_factory=list)
    text: dict[str, str] = field(default_factory=dict)
    scripts: list[tuple[dict[str, str | None], str]] = field(default_factory=list)

    def attrs(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.elements if name == tag]

    def hrefs(self, prefix: str = "") -> list[str]:
        return [str(a["href"]) for a in self.attrs("a") if (a.get("href") or "").startswith(prefix)]


_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self.open: list[str] = []
        self.script: dict[str, str | None] | None = None
        self.script_text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.page.elements.append((tag, dict(attrs)))
        if tag == "script":
            self.script, self.script_text = dict(attrs), ""
        if tag not in _VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self.script is not None:
            self.page.scripts.append((self.script, self.script_text))
            self.script = None
        if tag in self.open:
            del self.open[len(self.open) - 1 - self.open[::-1].index(tag) :]

    def handle_data(self, data: str) -> None:
        if self.script is not None:
            self.script_text += data
        for tag in set(self.open):
            self.page.text[tag] = self.page.text.get(tag, "") + data


def read_html(text: str) -> Page:
    reader = _Reader()
    reader.feed(text)
    reader.close()
    return reader.page


def active_content(page: Page) -> list[str]:
    """Anything that could run script: executable <script>, on* handlers, javascript:/data: URLs."""
    found = []
    for script_attrs, _ in page.scripts:
        if script_attrs.get("type") != "application/ld+json":
            found.append(f"<script {script_attrs}>")
    for tag, attrs in page.elements:
        for name, value in attrs.items():
            if name.lower().startswith("on"):
                found.append(f"<{tag} {name}=...>")
            url = "".join((value or "").split()).lower()
            if name in ("href", "src", "action", "formaction") and url.startswith(("javascript:", "data:")):
                found.append(f"<{tag} {name}={value}>")
    return found


def metric(text: str, sample: str, default: float | None = None, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition."""
    for family in text_string_to_metric_families(text):
        for item in family.samples:
            if item.name == sample and item.labels == labels:
                return float(item.value)
    if default is None:
        raise AssertionError(f"{sample}{labels} not in the metrics")
    return default


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


async def raw_request(app: ASGIApp, path: str, method: str = "GET") -> RawResponse:
    """Call the ASGI app with `path` exactly as given: no client-side normalisation of '..' segments."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return RawResponse(start["status"], headers, body)


def assert_absent(body: bytes, secrets: Iterable[str]) -> None:
    for secret in secrets:
        assert secret.encode() not in body


@asynccontextmanager
async def production_client(parts: Components) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sees an unhandled exception as the 500 a real server would send."""
    transport = httpx.ASGITransport(app=make_app(parts), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http

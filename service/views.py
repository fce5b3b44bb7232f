"""What each public resource contains: the store's data rendered once per site revision.

The web app and the static export both ask this module, so a feed served over HTTP and the same
feed written by `announce build` are the same bytes with the same ETag.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from service.ingest.frontmatter import RELEASE_ID
from service.models import Attachment, SiteVersion
from service.render.feeds import render_feed
from service.render.pages import PageRenderer
from service.render.site import FeedKind, Site
from service.store.releases import Releases

HTML = "text/html; charset=utf-8"
_CACHE_SIZE = 512


@dataclass(frozen=True, slots=True)
class Rendered:
    """A response body with the validators derived from it."""

    body: bytes
    media_type: str
    etag: str  # weak: the same entity may be sent gzip-compressed or not
    last_modified: datetime


def _rendered(body: bytes, media_type: str, last_modified: datetime) -> Rendered:
    digest = hashlib.sha256(body).hexdigest()[:32]
    return Rendered(body, media_type, f'W/"{digest}"', last_modified)


def valid_slug(value: str) -> bool:
    """True for strings that can be a release id or topic (anything else is a 404, never a lookup)."""
    return bool(RELEASE_ID.fullmatch(value))


class Views:
    """Renders feeds and pages from the store, caching each by the site revision."""

    def __init__(
        self,
        releases: Releases,
        pages: PageRenderer,
        site: Site,
        *,
        folder: Path,
        feed_size: int,
        page_size: int,
        languages: Sequence[str] = (),
        revision_seconds: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._releases = releases
        self._languages = tuple(languages)
        self._folder = folder
        self._pages = pages
        self._site = site
        self._feed_size = feed_size
        self._page_size = page_size
        self._cache: OrderedDict[tuple[object, ...], tuple[int, Rendered | None]] = OrderedDict()
        self._revision_seconds = revision_seconds
        self._monotonic = monotonic
        self._version: tuple[SiteVersion, int, float] | None = None  # version, store writes, fetched at

    async def _site_version(self) -> SiteVersion:
        # The revision is one query, but asking it on every request was half the CPU of serving a
        # feed: trust it for `revision_seconds`, unless this process has written to the site since
        # (its own changes show at once; another node's within revision_seconds).
        writes, now = self._releases.writes, self._monotonic()
        if self._version is not None:
            version, seen_writes, fetched_at = self._version
            if seen_writes == writes and now - fetched_at < self._revision_seconds:
                return version
        version = await self._releases.site_version()
        self._version = (version, writes, now)
        return version

    async def _cached(
        self, key: tuple[object, ...], build: Callable[[datetime], Awaitable[Rendered | None]]
    ) -> Rendered | None:
        version = await self._site_version()
        hit = self._cache.get(key)
        if hit is not None and hit[0] == version.revision:
            self._cache.move_to_end(key)
            return hit[1]
        rendered = await build(version.changed_at)
        self._cache[key] = (version.revision, rendered)
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return rendered

    async def feed(
        self, kind: FeedKind, topic: str | None = None, language: str | None = None
    ) -> Rendered | None:
        """The feed of `kind`: site-wide, one topic's, or one language's; None if there is no such feed."""
        if (topic is not None and not valid_slug(topic)) or (
            language is not None and language not in self._languages
        ):
            return None

        async def build(changed_at: datetime) -> Rendered | None:
            releases = await self._releases.latest(self._feed_size, topic, language)
            if topic is not None and not releases:
                return None
            body = render_feed(kind, releases, self._site, topic, language)
            return _rendered(body, f"{kind.media_type}; charset=utf-8", changed_at)

        return await self._cached(("feed", kind, topic, language), build)

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages with a feed of their own."""
        return self._languages

    async def archive(self, number: int, topic: str | None = None) -> Rendered | None:
        """An archive page; None past the last page or for an unknown topic."""
        if number < 1 or (topic is not None and not valid_slug(topic)):
            return None

        async def build(changed_at: datetime) -> Rendered | None:
            page = await self._releases.page(number, self._page_size, topic)
            if number > page.total_pages or (topic is not None and page.total_releases == 0):
                return None
            return _rendered(self._pages.archive(page, topic).encode(), HTML, changed_at)

        return await self._cached(("archive", number, topic), build)

    async def announcement(self, release_id: str) -> Rendered | None:
        """A release's permalink page; None if unknown, embargoed or withdrawn."""
        if not valid_slug(release_id):
            return None

        async def build(changed_at: datetime) -> Rendered | None:
            release = await self._releases.get(release_id)
            if release is None:
                return None
            # A release dated in the future must not claim a future Last-Modified (RFC 9110 8.8.2.1).
            modified = min(max(release.updated, release.published_at or release.updated), changed_at)
            versions = await self._releases.versions(release)
            return _rendered(self._pages.announcement(release, versions).encode(), HTML, modified)

        return await self._cached(("announcement", release_id), build)

    async def attachment(self, release_id: str, name: str) -> tuple[Path, Attachment] | None:
        """The file behind a published release's attachment, if that release lists it."""
        return next((found for found in await self.attachments_of(release_id) if found[1].name == name), None)

    async def attachments_of(self, release_id: str) -> list[tuple[Path, Attachment]]:
        """Every attachment file of a published release that is still inside the folder."""
        release = await self._releases.get(release_id) if valid_slug(release_id) else None
        if release is None:
            return []
        folder = self._folder.resolve()
        paths = [((folder / item.path).resolve(), item) for item in release.announcement.attachments]
        return [(path, item) for path, item in paths if path.is_relative_to(folder) and path.is_file()]

    def not_found(self) -> bytes:
        """The 404 page."""
        return self._pages.not_found().encode()

    async def topics(self) -> list[str]:
        """Topics with at least one published release."""
        return await self._releases.topics()

    async def page_count(self, topic: str | None = None) -> int:
        """Number of archive pages."""
        return (await self._releases.page(1, self._page_size, topic)).total_pages

    async def published_ids(self) -> list[str]:
        """Ids of every published release, newest first."""
        return await self._releases.published_ids()

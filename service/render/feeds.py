"""Feeds: RSS 2.0 and Atom 1.0 through feedgen (its only importer), JSON Feed 1.1 by hand.

Output is a pure function of the input: no clock, no library version, no set ordering, so the
same releases always give the same bytes (stable ETags, exact golden tests).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from feedgen.feed import FeedGenerator
from feedgen.util import xml_elem

from service.ingest.sanitize import strip_illegal
from service.models import Attachment, Release
from service.render.content import reader_body
from service.render.environment import language_name
from service.render.site import FeedKind, Site

GENERATOR = "announce"  # no version: upgrading feedgen or the service must not change the bytes
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
EMPTY_FEED_UPDATED = datetime(1970, 1, 1, tzinfo=UTC)  # a fixed "updated" when there is nothing
_ATOM_LINK = "{http://www.w3.org/2005/Atom}link"

JsonObject = dict[str, object]


@dataclass(frozen=True, slots=True)
class _Scope:
    """What a feed lists: everything, one topic, or one language."""

    topic: str | None = None
    language: str | None = None


def render_feed(
    kind: FeedKind,
    releases: Sequence[Release],
    site: Site,
    topic: str | None = None,
    language: str | None = None,
) -> bytes:
    """Render the feed of `kind` for `releases` (already ordered newest first, already limited)."""
    scope = _Scope(topic, language)
    if kind is FeedKind.JSON:
        return _json_feed(releases, site, scope)
    generator = _feed_generator(kind, releases, site, scope)
    if kind is FeedKind.ATOM:
        return bytes(generator.atom_str(pretty=True))
    return bytes(generator.rss_str(pretty=True))


# --- facts shared by every format ---------------------------------------------------------------


def _clean(text: str) -> str:
    # lxml raises on control characters and lone surrogates, and UTF-8 cannot encode the latter:
    # every string that reaches an output goes through here so hostile input cannot crash a feed.
    return strip_illegal(text)


def _utc(moment: datetime) -> datetime:
    # astimezone() would read a naive datetime as the host's local time: refuse it instead.
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime in a feed: {moment!r}")
    return moment.astimezone(UTC)


def _feed_updated(releases: Sequence[Release]) -> datetime:
    # From the data, never "now": otherwise every render changes the bytes and the ETag.
    return _utc(max((release.updated for release in releases), default=EMPTY_FEED_UPDATED))


def _feed_title(site: Site, scope: _Scope) -> str:
    if scope.topic:
        return _clean(f"{site.title}: {scope.topic}")
    if scope.language:
        return _clean(f"{site.title} ({language_name(scope.language)})")
    return _clean(site.title)


def _feed_language(site: Site, scope: _Scope) -> str:
    return _clean(scope.language or site.language)


def _feed_description(site: Site, scope: _Scope) -> str:
    # RSS requires a non-empty channel description; fall back to the title rather than raise.
    return _clean(site.description) or _feed_title(site, scope)


def _entry_title(release: Release) -> str:
    # Atom and RSS both refuse an entry without a title; an all-control-character title is empty.
    return _clean(release.announcement.title) or _clean(release.id)


def _author(release: Release, site: Site) -> str:
    return _clean(release.announcement.author or site.author)


def _topics(release: Release) -> list[str]:
    return [term for term in map(_clean, release.announcement.topics) if term]


def _self_url(kind: FeedKind, site: Site, scope: _Scope) -> str:
    return _clean(site.url(Site.feed_path(kind, scope.topic, scope.language)))


def _archive_url(site: Site, scope: _Scope) -> str:
    # The page a feed stands for; a language's feed stands for the whole archive.
    return _clean(site.url(Site.archive_path(1, scope.topic)))


def _feed_id(site: Site, scope: _Scope) -> str:
    # Unique per feed: a language's feed gets its own (unserved) URL as its id.
    return _clean(site.url(f"/{scope.language}/")) if scope.language else _archive_url(site, scope)


def _permalink(release: Release, site: Site) -> str:
    return _clean(site.url(Site.permalink_path(release.id)))


def _attachment_url(release: Release, attachment: Attachment, site: Site) -> str:
    return _clean(site.url(Site.attachment_path(release.id, attachment.name)))


# --- RSS and Atom (feedgen) ---------------------------------------------------------------------


class _RssHub:
    """A feedgen extension adding <atom:link rel="hub"> to an RSS channel."""

    # feedgen copies only the rel=self link into RSS, so the WebSub hub needs its own element.

    def __init__(self, href: str) -> None:
        self.href = href

    def extend_ns(self) -> dict[str, str]:
        """No namespace of its own: feedgen always declares atom in RSS."""
        return {}

    def extend_rss(self, rss: Any) -> Any:
        """Append the hub link to the channel (rss[0])."""
        xml_elem(_ATOM_LINK, rss[0], href=self.href, rel="hub")
        return rss

    def extend_atom(self, feed: Any) -> Any:
        """Nothing to do: Atom gets the hub from the feed's own links."""
        return feed


class _AtomEnclosures:
    """A feedgen entry extension adding <link rel="enclosure"> elements to an Atom entry."""

    # feedgen 1.0.0 writes only href on entry links, dropping rel, type and length (upstream
    # lkiesow/python-feedgen#135), so Atom enclosures are written here instead.

    def __init__(self, links: list[dict[str, str]]) -> None:
        self.links = links

    def extend_ns(self) -> dict[str, str]:
        """No namespace of its own: the links are plain Atom."""
        return {}

    def extend_rss(self, item: Any) -> Any:
        """Nothing to do: registered for Atom only."""
        return item

    def extend_atom(self, entry: Any) -> Any:
        """Append one link element per enclosure, attributes in a fixed order."""
        for link in self.links:
            href, type_, length = link["href"], link["type"], link["length"]
            xml_elem("link", entry, href=href, rel="enclosure", type=type_, length=length)
        return entry


def _feed_generator(kind: FeedKind, releases: Sequence[Release], site: Site, scope: _Scope) -> Any:
    generator = FeedGenerator()
    # RSS <author> must be an e-mail address; dc:creator carries a plain name.
    generator.load_extension("dc", atom=False, rss=True)
    generator.id(_feed_id(site, scope))
    generator.title(_feed_title(site, scope))
    generator.description(_feed_description(site, scope))
    generator.language(_feed_language(site, scope))
    generator.author(name=_clean(site.author))
    generator.generator(GENERATOR)
    generator.updated(_feed_updated(releases))
    _add_feed_links(generator, kind, site, scope)
    for release in releases:
        _add_entry(generator, kind, release, site)
    return generator


def _add_feed_links(generator: Any, kind: FeedKind, site: Site, scope: _Scope) -> None:
    # Order matters: RSS <link> is the *last* link added, so self first and alternate last.
    generator.link(href=_self_url(kind, site, scope), rel="self", type=kind.media_type)
    if site.hub:
        hub = _clean(site.hub)
        generator.link(href=hub, rel="hub")
        generator.register_extension("hub", lambda: _RssHub(hub), None, atom=False, rss=True)
    generator.link(href=_archive_url(site, scope), rel="alternate", type="text/html")


def _add_entry(generator: Any, kind: FeedKind, release: Release, site: Site) -> None:
    announcement = release.announcement
    # add_entry() prepends by default, which would reverse the newest-first order.
    entry = generator.add_entry(order="append")
    entry.id(_clean(release.guid))  # also the RSS guid, isPermaLink="false"
    entry.title(_entry_title(release))
    # Atom output loses rel (feedgen bug, see _AtomEnclosures), which still means "alternate".
    entry.link(href=_permalink(release, site), rel="alternate")
    entry.published(_utc(announcement.date))
    entry.updated(_utc(release.updated))
    entry.author(name=_author(release, site))
    if kind is FeedKind.RSS:
        entry.dc.dc_creator(_author(release, site))
    _add_texts(entry, release, site)
    for term in _topics(release):
        entry.category(term=term)
    _add_enclosures(entry, kind, release, site)


def _add_texts(entry: Any, release: Release, site: Site) -> None:
    # Skip empty texts: feedgen would write empty <summary/> / <content/> elements.
    summary = _clean(release.announcement.summary)
    body = _clean(reader_body(release, site.timezone))
    if summary:
        entry.summary(summary)
    if body:
        entry.content(body, type="html")


def _add_enclosures(entry: Any, kind: FeedKind, release: Release, site: Site) -> None:
    links = [_enclosure(release, a, site) for a in release.announcement.attachments]
    if not links:
        return
    if kind is FeedKind.ATOM:
        entry.register_extension("enclosures", lambda: _AtomEnclosures(links), atom=True, rss=False)
    else:
        # RSS allows one <enclosure>: the first attachment (feedgen keeps the last one given).
        entry.link(rel="enclosure", **links[0])


def _enclosure(release: Release, attachment: Attachment, site: Site) -> dict[str, str]:
    return {
        "href": _attachment_url(release, attachment, site),
        "type": _clean(attachment.content_type),
        "length": str(attachment.length),
    }


# --- JSON Feed 1.1 ------------------------------------------------------------------------------


def _json_feed(releases: Sequence[Release], site: Site, scope: _Scope) -> bytes:
    feed: JsonObject = {
        "version": JSON_FEED_VERSION,
        "title": _feed_title(site, scope),
        "home_page_url": _archive_url(site, scope),
        "feed_url": _self_url(FeedKind.JSON, site, scope),
        "description": _feed_description(site, scope),
        "language": _feed_language(site, scope),
        "authors": [{"name": _clean(site.author)}],
    }
    if site.hub:
        feed["hubs"] = [{"type": "WebSub", "url": _clean(site.hub)}]
    feed["items"] = [_json_item(release, site) for release in releases]
    # Insertion order is the key order (no sort_keys): stable, and readable in spec order.
    return (json.dumps(feed, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def _json_item(release: Release, site: Site) -> JsonObject:
    announcement = release.announcement
    item: JsonObject = {
        "id": _clean(release.guid),
        "url": _permalink(release, site),
        "title": _entry_title(release),
        "summary": _clean(announcement.summary),
        "content_html": _clean(reader_body(release, site.timezone)),
        "date_published": _utc(announcement.date).isoformat(),
        "date_modified": _utc(release.updated).isoformat(),
        "authors": [{"name": _author(release, site)}],
        "tags": _topics(release),
        "language": _clean(announcement.lang),
    }
    if announcement.attachments:
        item["attachments"] = [_json_attachment(release, a, site) for a in announcement.attachments]
    return item


def _json_attachment(release: Release, attachment: Attachment, site: Site) -> JsonObject:
    return {
        "url": _attachment_url(release, attachment, site),
        "mime_type": _clean(attachment.content_type),
        "size_in_bytes": attachment.length,
    }

"""The site as renderers see it: names, time zone and every public URL, in one place."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from urllib.parse import quote
from zoneinfo import ZoneInfo


class FeedKind(enum.StrEnum):
    """The feed formats served, named by their file extension."""

    RSS = "rss"
    ATOM = "atom"
    JSON = "json"

    @property
    def media_type(self) -> str:
        """The registered content type of this format."""
        return _MEDIA_TYPES[self]


_MEDIA_TYPES = {
    FeedKind.RSS: "application/rss+xml",
    FeedKind.ATOM: "application/atom+xml",
    FeedKind.JSON: "application/feed+json",
}


@dataclass(frozen=True, slots=True)
class Site:
    """Site-wide facts every renderer needs; built once from the settings."""

    title: str
    description: str
    author: str
    base_url: str  # no trailing slash
    language: str
    timezone: ZoneInfo
    hub: str | None = None

    def url(self, path: str) -> str:
        """Absolute URL of a site path that starts with '/'."""
        return f"{self.base_url}{path}"

    @staticmethod
    def permalink_path(release_id: str) -> str:
        """Path of a release's permalink page."""
        return f"/announcements/{release_id}"

    @staticmethod
    def attachment_path(release_id: str, name: str) -> str:
        """Path an attachment is served from (the file name percent-encoded)."""
        return f"/announcements/{release_id}/attachments/{quote(name)}"

    @staticmethod
    def feed_path(kind: FeedKind, topic: str | None = None, language: str | None = None) -> str:
        """Path of the site feed, of one topic's feed, or of one language's feed."""
        if topic:
            return f"/topics/{topic}/feed.{kind}"
        return f"/{language}/feed.{kind}" if language else f"/feed.{kind}"

    @staticmethod
    def archive_path(number: int = 1, topic: str | None = None) -> str:
        """Path of an archive page (1-based)."""
        prefix = f"/topics/{topic}" if topic else ""
        return f"{prefix}/" if number == 1 else f"{prefix}/page/{number}"

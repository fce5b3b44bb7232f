"""`announce build`: the feeds and the archive as static files, written atomically."""

from __future__ import annotations

import shutil
from pathlib import Path

from service.files import write_atomic
from service.render.site import FeedKind, Site
from service.views import Views

MANIFEST = ".announce-build"


def _file_for(site_path: str) -> str:
    # "/" -> index.html, "/page/2" -> page/2/index.html, "/feed.atom" -> feed.atom
    relative = site_path.strip("/")
    if not relative or "." not in relative.rsplit("/", 1)[-1]:
        return f"{relative}/index.html".lstrip("/")
    return relative


class Exporter:
    """Writes every public resource the web app serves, at the same paths."""

    def __init__(self, views: Views, folder: Path, out: Path) -> None:
        self._views = views
        self._folder = folder
        self._out = out
        self._written: list[str] = []

    async def run(self) -> list[str]:
        """Write the whole site; remove files an earlier build wrote that no longer exist."""
        for topic in [None, *await self._views.topics()]:
            for kind in FeedKind:
                rendered = await self._views.feed(kind, topic)
                if rendered is not None:
                    self._write(Site.feed_path(kind, topic), rendered.body)
            for number in range(1, await self._views.page_count(topic) + 1):
                page = await self._views.archive(number, topic)
                if page is not None:
                    self._write(Site.archive_path(number, topic), page.body)
        for language in self._views.languages:
            for kind in FeedKind:
                rendered = await self._views.feed(kind, language=language)
                if rendered is not None:
                    self._write(Site.feed_path(kind, language=language), rendered.body)
        for release_id in await self._views.published_ids():
            await self._release(release_id)
        write_atomic(self._out / "404.html", self._views.not_found())
        self._written.append("404.html")
        self._prune()
        return self._written

    async def _release(self, release_id: str) -> None:
        page = await self._views.announcement(release_id)
        if page is None:
            return
        self._write(Site.permalink_path(release_id), page.body)
        release_attachments = await self._views.attachments_of(release_id)
        for path, item in release_attachments:
            # The file name as is: the URL's percent-encoding is undone by the web server.
            target = self._out / "announcements" / release_id / "attachments" / item.name
            write_atomic(target, path.read_bytes())
            self._written.append(target.relative_to(self._out).as_posix())

    def _write(self, site_path: str, body: bytes) -> None:
        relative = _file_for(site_path)
        write_atomic(self._out / relative, body)
        self._written.append(relative)

    def _prune(self) -> None:
        manifest = self._out / MANIFEST
        previous = manifest.read_text(encoding="utf-8").splitlines() if manifest.exists() else []
        for stale in set(previous) - set(self._written):
            target = (self._out / stale).resolve()
            if target.is_relative_to(self._out.resolve()) and target.is_file():
                target.unlink()
        write_atomic(manifest, "\n".join(sorted(self._written)).encode())
        for directory in sorted(self._out.rglob("*"), reverse=True):
            if directory.is_dir() and not any(directory.iterdir()):
                shutil.rmtree(directory)

"""One function per scheduled job. The pipeline: scan -> upsert -> publish due -> notify."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import Protocol
from urllib.parse import urlsplit

from service.clock import Clock
from service.errors import AnnouncementError
from service.ingest.inbox import FileStat, folder_time_ns, list_release_files
from service.ingest.options import IngestOptions
from service.ingest.reader import read_release
from service.ingest.reports import sync_reports
from service.metrics import Metrics
from service.models import Announcement, FileProblem, Frequency, Release, ScanReport
from service.render.site import FeedKind, Site
from service.store.cluster import Cluster
from service.store.ledger import Ledger
from service.store.releases import Change, Releases
from service.store.sources import Dependency, FileSeen, SourceRecord, Sources

log = logging.getLogger(__name__)


@functools.cache  # once per folder, not at every scan
def _warn_read_only(folder: str) -> None:
    log.warning(
        "announcements folder is read-only: file ages are measured with this machine's clock, "
        "which may differ from a network share's",
        extra={"folder": folder},
    )


class Notifier(Protocol):
    """Told which feed URLs changed (WebSub)."""

    async def feeds_changed(self, urls: Sequence[str]) -> None:
        """Announce the changed feeds."""
        ...


@dataclass(frozen=True, slots=True)
class FanOutPolicy:
    """Which releases are mailed, and for how long delivery is attempted."""

    max_age: timedelta = timedelta(days=7)  # older releases (an archive import) are not mailed
    horizon: timedelta = timedelta(days=3)


@dataclass
class JobContext:
    """Everything the jobs need, built once by the runtime."""

    folder: Path
    options: IngestOptions
    settle_seconds: float
    site: Site
    releases: Releases
    sources: Sources
    clock: Clock
    metrics: Metrics
    notifier: Notifier | None = None
    ledger: Ledger | None = None  # None: feeds only, no mail
    fan_out: FanOutPolicy = field(default_factory=FanOutPolicy)
    on_queued: Callable[[], None] = lambda: None  # wakes the dispatcher
    embargo_grace: timedelta = timedelta(minutes=30)  # later than this, a missed embargo is held
    cluster: Cluster | None = None  # the other nodes on this database; None: this process alone
    scan_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def guid_for(site: Site, ann: Announcement) -> str:
    """A tag: URI (RFC 4151) fixed when the release is first stored, whatever the base URL becomes later."""
    host = urlsplit(site.base_url).hostname or "localhost"
    return f"tag:{host},{ann.date:%Y-%m-%d}:{ann.id}"


def feed_urls(site: Site, topics: Iterable[str]) -> list[str]:
    """Absolute URLs of the site feeds and of the given topics' feeds."""
    scopes: list[str | None] = [None, *sorted(set(topics))]
    return [site.url(Site.feed_path(kind, topic)) for topic in scopes for kind in FeedKind]


async def scan(ctx: JobContext) -> ScanReport:
    """Bring the store in line with the folder: ingest new and changed files, withdraw deleted ones."""
    # One scan at a time across every node on the database: they share the folder and the store.
    async with ctx.cluster.exclusive("scan") if ctx.cluster is not None else ctx.scan_lock:
        started = time.perf_counter()
        files = await asyncio.to_thread(list_release_files, ctx.folder, ctx.options.languages)
        known = await ctx.sources.snapshot()
        scan = _Pass(ctx, files, known)
        await scan.ingest()
        await scan.withdraw()
        await asyncio.to_thread(sync_reports, ctx.folder, scan.problems, scan.cleared())
        await _hold_missed(ctx)
        published = await ctx.releases.publish_due(ctx.clock.now())
        report = scan.report(published, time.perf_counter() - started)
        await _after_scan(ctx, report, scan.topics | {t for r in published for t in r.announcement.topics})
    await fan_out(ctx)
    return report


async def publish_due(ctx: JobContext) -> list[Release]:
    """Publish releases whose embargo has passed (the embargo job and the scan both call this)."""
    await _hold_missed(ctx)
    published = await ctx.releases.publish_due(ctx.clock.now())
    for release in published:
        log.info("published", extra={"release": release.id, "version": release.version})
    if published:
        await _refresh_counts(ctx)
        await _notify(ctx, {t for r in published for t in r.announcement.topics})
    await fan_out(ctx)
    return published


async def release_held(ctx: JobContext, release_id: str) -> Release | None:
    """Publish and mail a held release now (`announce release ID`); None if it is not held."""
    release = await ctx.releases.release_held(release_id, ctx.clock.now())
    if release is None:
        return None
    log.info("held release released", extra={"release": release.id, "version": release.version})
    await _refresh_counts(ctx)
    await _notify(ctx, release.announcement.topics)
    await fan_out(ctx)
    return release


async def _hold_missed(ctx: JobContext) -> None:
    held = await ctx.releases.hold_missed(ctx.clock.now(), ctx.embargo_grace)
    for release_id in held:
        # An operator decides whether a release that is late by more than the grace still goes out.
        log.warning(
            "embargo missed: release held; publish it with `announce release %s`",
            release_id,
            extra={"release": release_id, "grace_minutes": ctx.embargo_grace.total_seconds() / 60},
        )
    if held:
        await _refresh_counts(ctx)


DIGEST_PERIODS = {Frequency.DAILY: timedelta(days=1), Frequency.WEEKLY: timedelta(days=7)}


async def queue_digests(ctx: JobContext, frequency: Frequency) -> int:
    """The digest job: queue a digest for each daily (or weekly) subscriber with news since the last one.

    Every node runs it at the same time: they take turns, and those after the first find the run
    recorded as done (queueing is idempotent too, so a node that dies midway is finished by the next).
    """
    if ctx.ledger is None:
        return 0
    job, run = f"digest:{frequency}", ctx.clock.now().date().isoformat()
    async with ctx.cluster.exclusive(job) if ctx.cluster is not None else contextlib.nullcontext():
        if ctx.cluster is not None and await ctx.cluster.has_run(job, run):
            log.info("digests already queued by another node", extra={"frequency": frequency.value})
            return 0
        now = ctx.clock.now()
        queued = await ctx.ledger.queue_digests(
            frequency, DIGEST_PERIODS[frequency], now, ctx.fan_out.horizon, ctx.fan_out.max_age
        )
        if ctx.cluster is not None:
            await ctx.cluster.record_run(job, run, now)
    log.info("digests queued", extra={"frequency": frequency.value, "count": queued})
    if queued:
        ctx.on_queued()
    return queued


async def fan_out(ctx: JobContext) -> int:
    """Queue bulletins for newly published releases and notices for new corrections; once each."""
    if ctx.ledger is None:
        return 0
    queued = 0
    now = ctx.clock.now()
    for release_id, version, topics, date in await ctx.ledger.awaiting_fan_out():
        mail = now - date <= ctx.fan_out.max_age
        count = await ctx.ledger.fan_out(release_id, version, topics, now, ctx.fan_out.horizon, mail)
        if count is not None:
            log.info("bulletins queued", extra={"release": release_id, "count": count, "mailed": mail})
            queued += count
    for release_id, version in await ctx.ledger.awaiting_corrections():
        count = await ctx.ledger.fan_out_correction(release_id, version, now, ctx.fan_out.horizon)
        if count is not None:
            log.info("correction notices queued", extra={"release": release_id, "count": count})
            queued += count
    if queued:
        ctx.on_queued()
    return queued


async def _after_scan(ctx: JobContext, report: ScanReport, topics: set[str]) -> None:
    await ctx.sources.record_scan(report, ctx.clock.now())
    ctx.metrics.scan_seconds.observe(report.seconds)
    ctx.metrics.file_problems.set(len(await ctx.sources.problems()))
    await _refresh_counts(ctx)
    if report.changed:
        log.info(
            "scan changed releases",
            extra={
                "new": list(report.created),
                "edited": list(report.updated),
                "withdrawn": list(report.withdrawn),
                "published": list(report.published),
            },
        )
        await _notify(ctx, topics)


async def _refresh_counts(ctx: JobContext) -> None:
    ctx.metrics.set_release_counts(await ctx.releases.counts())


async def _notify(ctx: JobContext, topics: Iterable[str]) -> None:
    if ctx.notifier is not None:
        await ctx.notifier.feeds_changed(feed_urls(ctx.site, topics))


@dataclass(frozen=True, slots=True)
class _Read:
    """A changed file as read by the first half of a pass: its announcement, its problem, or None
    when only touched; `seen` is None when it could not be read at all."""

    file: FileStat
    record: SourceRecord | None
    seen: FileSeen | None
    result: Announcement | FileProblem | None


def _parse(ctx: JobContext, file: FileStat, raw: bytes) -> Announcement:
    try:
        return read_release(ctx.folder, file.path, raw, ctx.options, file.companions)
    except AnnouncementError:
        raise
    except Exception as exc:
        # A parser bug on hostile input must cost one file, not the scan of all the others.
        log.exception("parser failed", extra={"file": file.source})
        raise AnnouncementError(file.source, f"could not be parsed ({type(exc).__name__}: {exc})") from exc


class _Pass:
    """One scan of the folder; collects what changed for the report."""

    def __init__(self, ctx: JobContext, files: list[FileStat], known: dict[str, SourceRecord]) -> None:
        self.ctx = ctx
        self.files = files
        self.known = known
        self.live = {f.source for f in files}
        self.claims: dict[str, str | None] = {}  # source -> release id it now defines (None: draft)
        self.created: list[str] = []
        self.updated: list[str] = []
        self.withdrawn: list[str] = []
        self.deferred: list[str] = []
        self.problems: list[FileProblem] = []
        self.topics: set[str] = set()
        self.unchanged = 0

    async def ingest(self) -> None:
        """Read every new or changed file; unchanged ones cost one stat() each.

        Files are read first and stored second, so that a file another release lists as an
        attachment (a `.txt` note beside a `.md` release) is never published as a release itself.
        """
        settled_before = await self._now_ns() - int(self.ctx.settle_seconds * 1e9)
        changed: list[_Read] = []
        for file in self.files:
            record = self.known.get(file.source)
            if (
                record
                and record.problem is None
                and (record.size, record.mtime_ns) == (file.size, file.mtime_ns)
                and self._deps_unchanged(record, file)
            ):
                self.claims[file.source] = record.release_id
                self.unchanged += 1
            elif file.mtime_ns > settled_before:
                self.deferred.append(file.source)  # may still be being written
                if record is not None:
                    self.claims[file.source] = record.release_id
            else:
                changed.append(await self._read(file, record))
        attached = self._attached(changed)
        for item in changed:
            await self._store(item, attached)
        for source in attached & self.claims.keys():
            self.claims[source] = None  # an unchanged release file that is now another's attachment
        await self.ctx.sources.forget(set(self.known) - self.live)

    async def _now_ns(self) -> int:
        # The folder's own clock, so that file times are compared with the clock that wrote them.
        if self.ctx.settle_seconds <= 0:
            return time.time_ns()
        now = await asyncio.to_thread(folder_time_ns, self.ctx.folder)
        if now is None:
            _warn_read_only(str(self.ctx.folder))
            return time.time_ns()
        return now

    def _attached(self, changed: list[_Read]) -> set[str]:
        # Files that some release (other than themselves) publishes as an attachment.
        paths = {
            dep.path
            for source, record in self.known.items()
            if source in self.claims and record.release_id is not None
            for dep in record.deps
            if dep.path != source
        }
        for item in changed:
            if isinstance(item.result, Announcement):
                paths.update(a.path for a in item.result.attachments if a.path != item.file.source)
        return paths

    async def _read(self, file: FileStat, record: SourceRecord | None) -> _Read:
        try:
            raw = await asyncio.to_thread(file.path.read_bytes)
        except OSError as exc:
            return _Read(file, record, None, FileProblem(file.source, f"cannot read: {exc.strerror}"))
        seen = FileSeen(file.source, len(raw), file.mtime_ns, hashlib.sha256(raw).hexdigest())
        if (
            record
            and record.problem is None
            and record.sha256 == seen.sha256
            and self._deps_unchanged(record, file)
        ):
            return _Read(file, record, seen, None)  # touched, not changed
        try:
            ann = await asyncio.to_thread(_parse, self.ctx, file, raw)
        except AnnouncementError as exc:
            return _Read(file, record, seen, FileProblem(file.source, exc.reason, exc.line, exc.hint))
        return _Read(file, record, seen, ann)

    async def _store(self, item: _Read, attached: set[str]) -> None:
        ctx, file, record, seen, result = self.ctx, item.file, item.record, item.seen, item.result
        now = ctx.clock.now()
        if seen is None:  # could not be read at all
            assert isinstance(result, FileProblem)
            self._problem(result, record)
        elif file.source in attached or (isinstance(result, Announcement) and result.draft):
            self.claims[file.source] = None
            await ctx.sources.record(seen, now)
        elif result is None:  # touched, not changed
            assert record is not None
            self.claims[file.source] = record.release_id
            self.unchanged += 1
            await ctx.sources.record(seen, now, release_id=record.release_id)
        elif isinstance(result, FileProblem):
            await self._refuse(result, record, seen)
        else:
            try:
                stored = await ctx.releases.upsert(
                    result, guid=guid_for(ctx.site, result), now=now, live_sources=self.live
                )
            except AnnouncementError as exc:  # e.g. an id another file already uses
                await self._refuse(FileProblem(file.source, exc.reason, exc.line, exc.hint), record, seen)
                return
            except (ValueError, TypeError, OverflowError) as exc:
                # Data a hostile file got past validation (the database being down is not caught here):
                # it costs that file, not the scan.
                log.exception("release could not be stored", extra={"file": file.source})
                reason = f"could not be stored ({type(exc).__name__}: {str(exc)[:200]})"
                await self._refuse(FileProblem(file.source, reason), record, seen)
                return
            self.claims[file.source] = result.id
            seen = FileSeen(seen.path, seen.size, seen.mtime_ns, seen.sha256, self._deps_of(result))
            await ctx.sources.record(seen, now, release_id=result.id)
            if stored.change is Change.CREATED:
                self.created.append(result.id)
            elif stored.change in (Change.UPDATED, Change.RESTORED):
                self.updated.append(result.id)
            self.topics.update(result.topics, stored.previous_topics)

    async def _refuse(self, problem: FileProblem, record: SourceRecord | None, seen: FileSeen) -> None:
        self._problem(problem, record)
        kept = record.release_id if record is not None else None
        self.claims[problem.source] = kept  # keep serving the last good version, scan after scan
        await self.ctx.sources.record(seen, self.ctx.clock.now(), release_id=kept, problem=problem)

    def _deps_of(self, ann: Announcement) -> tuple[Dependency, ...]:
        deps = []
        for attachment in ann.attachments:
            with contextlib.suppress(OSError):
                info = (self.ctx.folder / attachment.path).stat()
                deps.append(Dependency(attachment.path, info.st_size, info.st_mtime_ns))
        return tuple(deps)

    def _deps_unchanged(self, record: SourceRecord, file: FileStat) -> bool:
        # A replaced attachment changes the release (its length and hash are in the feeds); so does
        # a new file named after it.
        folder = file.path.parent.relative_to(self.ctx.folder.absolute()).as_posix()
        known = {dep.path for dep in record.deps}
        if any(str(PurePosixPath(folder, name)) not in known for name in file.companions):
            return False
        for dep in record.deps:
            try:
                info = (self.ctx.folder / dep.path).stat()
            except OSError:
                return False
            if (info.st_size, info.st_mtime_ns) != (dep.size, dep.mtime_ns):
                return False
        return True

    def _problem(self, problem: FileProblem, record: SourceRecord | None) -> None:
        self.problems.append(problem)
        self.ctx.metrics.ingest_errors.inc()
        if record is not None and record.problem == problem:
            return  # already reported; the rescan re-reads refused files in case an attachment appeared
        log.warning(
            "release file refused",
            extra={
                "file": problem.source,
                "line": problem.line,
                "reason": problem.reason,
                "hint": problem.hint,
            },
        )

    def cleared(self) -> set[str]:
        """Files refused before that are now read without a problem, or are gone."""
        refused_now = {p.source for p in self.problems}
        return {
            source
            for source, record in self.known.items()
            if record.problem is not None and source not in refused_now and source not in self.deferred
        }

    async def withdraw(self) -> None:
        """Withdraw releases whose file is gone, became a draft, or now defines another id."""
        stale = [
            release_id
            for release_id, source in (await self.ctx.releases.sources()).items()
            if source not in self.live or (source in self.claims and self.claims[source] != release_id)
        ]
        if stale:
            self.topics.update(await self.ctx.releases.topics_of(stale))  # those topic feeds change too
            self.withdrawn = await self.ctx.releases.withdraw(stale, self.ctx.clock.now())

    def report(self, published: list[Release], seconds: float) -> ScanReport:
        """Freeze what this pass did."""
        return ScanReport(
            files=len(self.files),
            created=tuple(self.created),
            updated=tuple(self.updated),
            withdrawn=tuple(self.withdrawn),
            published=tuple(r.id for r in published),
            unchanged=self.unchanged,
            deferred=tuple(self.deferred),
            problems=tuple(self.problems),
            seconds=seconds,
        )

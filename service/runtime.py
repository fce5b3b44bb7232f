"""Build every component once and run HTTP, the scheduler and the folder watcher in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from service.clock import Clock, SystemClock
from service.config import Settings
from service.delivery.websub import WebSubPublisher
from service.ingest.inbox import watch
from service.ingest.options import IngestOptions
from service.jobs import JobContext
from service.metrics import Metrics
from service.render.environment import make_environment
from service.render.pages import PageRenderer
from service.render.site import Site
from service.scheduler import Scheduler
from service.store.database import Database, open_database
from service.store.releases import Releases
from service.store.sources import Sources
from service.views import Views
from service.web.app import create_app
from service.web.routes import WebDeps

log = logging.getLogger(__name__)


def site_from(settings: Settings) -> Site:
    """The renderers' view of the settings."""
    return Site(
        title=settings.site_title,
        description=settings.site_description,
        author=settings.site_author,
        base_url=settings.base_url,
        language=settings.default_language,
        timezone=settings.tz,
        hub=settings.websub_hub,
    )


@dataclass
class Components:
    """The service's parts, wired together; nothing here starts running until asked."""

    settings: Settings
    database: Database
    releases: Releases
    sources: Sources
    metrics: Metrics
    views: Views
    jobs: JobContext

    async def close(self) -> None:
        """Release the database connections."""
        await self.database.dispose()


def build(settings: Settings, clock: Clock | None = None) -> Components:
    """Construct every component from the settings (no I/O beyond opening the engine)."""
    database = open_database(settings.effective_database_url)
    releases, sources, metrics = Releases(database), Sources(database), Metrics()
    site = site_from(settings)
    pages = PageRenderer(make_environment(settings.templates_dir), site)
    views = Views(
        releases,
        pages,
        site,
        folder=settings.announcements_dir,
        feed_size=settings.feed_size,
        page_size=settings.page_size,
    )
    ctx = JobContext(
        folder=settings.announcements_dir,
        options=IngestOptions(settings.tz, settings.default_language, settings.max_file_bytes),
        settle_seconds=settings.settle_seconds,
        site=site,
        releases=releases,
        sources=sources,
        clock=clock or SystemClock(),
        metrics=metrics,
        notifier=WebSubPublisher(settings.websub_hub, metrics) if settings.websub_hub else None,
    )
    return Components(settings, database, releases, sources, metrics, views, ctx)


def make_app(parts: Components, scheduler: Scheduler | None = None) -> FastAPI:
    """The ASGI app; with a scheduler, its lifespan also runs the scanner and the watcher."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if scheduler is None:
            yield
            return
        stop = asyncio.Event()

        async def changed() -> None:
            scheduler.request_scan()

        await scheduler.start()
        watcher = asyncio.create_task(watch(parts.settings.announcements_dir, changed, stop), name="watcher")
        log.info("service started", extra={"url": parts.settings.base_url})
        try:
            yield
        finally:
            stop.set()
            await scheduler.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(watcher, timeout=5)
            # Here, not after serve(): uvicorn re-raises SIGTERM once the app has shut down.
            await parts.close()
            log.info("service stopped")

    deps = WebDeps(views=parts.views, database=parts.database, sources=parts.sources, metrics=parts.metrics)
    return create_app(deps, lifespan=lifespan, title=parts.settings.site_title)


async def serve(settings: Settings) -> None:
    """`announce run`: migrate, then serve until SIGINT/SIGTERM, then shut down cleanly."""
    parts = build(settings)
    try:
        await parts.database.migrate()
        settings.announcements_dir.mkdir(parents=True, exist_ok=True)
        app = make_app(parts, Scheduler(parts.jobs, settings.scan_interval))
        config = uvicorn.Config(
            app,
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            lifespan="on",
            server_header=False,
        )
        await uvicorn.Server(config).serve()
    finally:
        await parts.close()

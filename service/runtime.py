"""Build every component once and run HTTP, the scheduler and the folder watcher in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta

import jinja2
import uvicorn
from fastapi import FastAPI

from service.audience import Audience
from service.clock import Clock, SystemClock
from service.config import Settings
from service.delivery.attachments import small_attachments
from service.delivery.compose import Composer
from service.delivery.dispatch import Dispatcher, DispatchPolicy
from service.delivery.dkim import make_signer
from service.delivery.mailer import Mailer
from service.delivery.outbox import OutboxMailer
from service.delivery.smtp import SmtpMailer, SmtpOptions
from service.delivery.websub import WebSubPublisher
from service.ingest.inbox import watch
from service.ingest.options import IngestOptions
from service.jobs import FanOutPolicy, JobContext
from service.metrics import Metrics
from service.render.bulletin import MailRenderer, Sender
from service.render.environment import catalog_languages, make_environment
from service.render.pages import PageRenderer
from service.render.site import Site
from service.scheduler import DigestSchedule, Scheduler
from service.store.cluster import Cluster
from service.store.database import Database, open_database
from service.store.ledger import Ledger
from service.store.releases import Releases
from service.store.sources import Sources
from service.store.subscribers import Subscribers
from service.tokens import Tokens, load_or_create_secret
from service.views import Views
from service.web.app import create_app
from service.web.routes import WebDeps
from service.web.subscriptions import csrf_key

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


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (faster sockets for HTTP and SMTP), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows, where uvloop does not exist
        return None
    return uvloop.new_event_loop


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
    subscribers: Subscribers
    ledger: Ledger
    audience: Audience
    tokens: Tokens
    site: Site
    templates: jinja2.Environment
    mailer: Mailer
    dispatcher: Dispatcher

    async def close(self) -> None:
        """Release mail connections and database connections."""
        await self.mailer.close()
        await self.database.dispose()


def build(settings: Settings, clock: Clock | None = None) -> Components:
    """Construct every component from the settings (no I/O beyond opening the engine)."""
    database = open_database(settings.effective_database_url)
    releases, sources = Releases(database, settings.default_language), Sources(database)
    metrics = Metrics()
    subscribers, ledger = Subscribers(database), Ledger(database, settings.default_language)
    site = site_from(settings)
    templates = make_environment(settings.templates_dir)
    untranslated = set(settings.site_languages) - set(catalog_languages(settings.templates_dir))
    if untranslated:
        # Not an error: releases and feeds in that language work; only our fixed text stays English.
        log.warning(
            "no template catalog for %s: pages and mails in it use the English text",
            ", ".join(sorted(untranslated)),
            extra={"templates_dir": str(settings.templates_dir)},
        )
    pages = PageRenderer(templates, site)
    clock = clock or SystemClock()
    tokens = Tokens(
        link_secret(settings),
        [key.get_secret_value() for key in settings.previous_secret_keys],
        confirm_max_age=timedelta(hours=settings.confirm_token_hours),
        previous_until=settings.previous_secret_keys_until,
        clock=clock,
    )
    audience = Audience(
        subscribers,
        ledger,
        tokens,
        clock,
        confirmation_window=timedelta(minutes=settings.confirmation_window_minutes),
        retry_horizon=timedelta(hours=settings.retry_horizon_hours),
    )
    views = Views(
        releases,
        pages,
        site,
        folder=settings.announcements_dir,
        feed_size=settings.feed_size,
        page_size=settings.page_size,
        languages=settings.site_languages,
        revision_seconds=settings.view_cache_seconds,
    )
    ctx = JobContext(
        folder=settings.announcements_dir,
        options=IngestOptions.from_settings(settings),
        settle_seconds=settings.settle_seconds,
        site=site,
        releases=releases,
        sources=sources,
        clock=clock,
        metrics=metrics,
        notifier=WebSubPublisher(settings.websub_hub, metrics) if settings.websub_hub else None,
    )
    mailer = make_mailer(settings)
    node = f"{socket.gethostname()}:{os.getpid()}"
    dispatcher = Dispatcher(
        ledger, make_composer(settings, site, templates, releases, tokens), mailer, clock, metrics,
        DispatchPolicy(
            node=node,
            batch=settings.dispatch_batch,
            lease=timedelta(seconds=settings.lease_seconds),
            concurrency=settings.smtp_pool_size,
            retry_unknown=settings.unknown_policy == "retry",
            shared_rate=settings.smtp_rate_scope == "cluster",
        ),
    )  # fmt: skip
    ctx.ledger = ledger
    ctx.fan_out = FanOutPolicy(
        max_age=timedelta(days=settings.bulletin_max_age_days),
        horizon=timedelta(hours=settings.retry_horizon_hours),
    )
    ctx.on_queued = audience.wake_dispatcher = dispatcher.wake
    ctx.embargo_grace = timedelta(minutes=settings.embargo_grace_minutes)
    ctx.cluster = Cluster(database, node)
    return Components(
        settings, database, releases, sources, metrics, views, ctx,
        subscribers, ledger, audience, tokens, site, templates, mailer, dispatcher,
    )  # fmt: skip


def link_secret(settings: Settings) -> str:
    """The key signing links: from the environment or secret_key_file, else <data_dir>/secret_key."""
    return settings.secret_key_value or load_or_create_secret(settings.data_dir / "secret_key")


def make_mailer(settings: Settings) -> Mailer:
    """The configured transport: the file outbox (default) or an SMTP relay."""
    if settings.mail_transport == "outbox":
        return OutboxMailer(settings.effective_outbox_dir)
    return SmtpMailer(
        SmtpOptions(
            host=settings.smtp_host,
            port=settings.smtp_port,
            security=settings.smtp_security,
            username=settings.smtp_username,
            password=settings.smtp_password_value,
            timeout=settings.smtp_timeout,
            pool_size=settings.smtp_pool_size,
            rate_limit=settings.smtp_rate_limit,
        )
    )


def make_composer(
    settings: Settings, site: Site, templates: jinja2.Environment, releases: Releases, tokens: Tokens
) -> Composer:
    """Message rendering and personalisation, with DKIM signing when a key is configured."""
    sender = Sender(settings.mail_from, settings.mail_from_name or settings.site_title, settings.mail_domain)
    signer = None
    if settings.dkim_key_file is not None:
        signer = make_signer(settings.dkim_key_file, settings.dkim_selector, settings.mail_domain)
    return Composer(
        MailRenderer(templates, site, sender), releases, tokens, site, sender,
        confirm_hours=int(settings.confirm_token_hours), signer=signer,
        files=small_attachments(settings.announcements_dir, settings.bulletin_attach_max_bytes),
    )  # fmt: skip


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

    deps = WebDeps(
        views=parts.views,
        database=parts.database,
        sources=parts.sources,
        metrics=parts.metrics,
        audience=parts.audience,
        tokens=parts.tokens,
        pages=PageRenderer(parts.templates, parts.site),
        site=parts.site,
        clock=parts.jobs.clock,
        csrf_secret=csrf_key(link_secret(parts.settings)),
        subscribe_rate_limit=parts.settings.subscribe_rate_limit,
        link_rate_limit=parts.settings.link_rate_limit,
        max_request_bytes=parts.settings.max_request_bytes,
    )
    return create_app(deps, lifespan=lifespan, title=parts.settings.site_title)


async def serve(settings: Settings) -> None:
    """`announce run`: migrate, then serve until SIGINT/SIGTERM, then shut down cleanly."""
    parts = build(settings)
    try:
        await parts.database.migrate()
        settings.announcements_dir.mkdir(parents=True, exist_ok=True)
        hour, minute = (int(x) for x in settings.digest_time.split(":"))
        digests = DigestSchedule(hour, minute, settings.weekly_digest_day, settings.tz)
        scheduler = Scheduler(
            parts.jobs, settings.scan_interval, parts.dispatcher, digests, settings.heartbeat_seconds
        )
        app = make_app(parts, scheduler)
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

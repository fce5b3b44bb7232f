"""APScheduler wiring on the real clock: embargo jobs are rebuilt from the database and fire on time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from service.config import Settings
from service.runtime import Components, build
from service.scheduler import Scheduler
from tests.conftest import Inbox


@pytest.fixture
async def live(settings: Settings) -> AsyncIterator[Components]:
    components = build(settings)  # the system clock: APScheduler fires on real time
    await components.database.migrate()
    yield components
    await components.close()


async def wait_until_visible(parts: Components, release_id: str, within: float) -> None:
    # Polls the database: the release becoming visible has no in-process event to wait on.
    async with asyncio.timeout(within):
        while await parts.releases.get(release_id) is None:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_embargo_schedule_survives_a_restart(live: Components, inbox: Inbox) -> None:
    embargo = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    inbox.release("tomorrow.md", publish_at=embargo.isoformat())
    first = Scheduler(live.jobs, scan_interval=3600)
    await first.start()
    assert first.embargo_jobs() == {"tomorrow": embargo}
    await first.stop()
    restarted = Scheduler(live.jobs, scan_interval=3600)
    await restarted.start()
    try:
        assert restarted.embargo_jobs() == {"tomorrow": embargo}
    finally:
        await restarted.stop()


async def test_embargo_job_publishes_on_time(live: Components, inbox: Inbox) -> None:
    embargo = datetime.now(UTC) + timedelta(seconds=1)
    inbox.release("soon.md", publish_at=embargo.isoformat())
    scheduler = Scheduler(live.jobs, scan_interval=3600)
    await scheduler.start()
    try:
        assert await live.releases.get("soon") is None
        await wait_until_visible(live, "soon", within=5)
        release = await live.releases.get("soon")
        assert release is not None
        assert release.published_at is not None
        assert release.published_at >= embargo
    finally:
        await scheduler.stop()
    assert scheduler.embargo_jobs() == {}


async def test_requested_scans_are_coalesced_not_lost(live: Components, inbox: Inbox) -> None:
    scheduler = Scheduler(live.jobs, scan_interval=3600)
    await scheduler.start()
    try:
        inbox.release("one.md")
        for _ in range(20):
            scheduler.request_scan()
        await wait_until_visible(live, "one", within=5)
        inbox.release("two.md")
        scheduler.request_scan()
        await wait_until_visible(live, "two", within=5)
    finally:
        await scheduler.stop()


async def test_embargo_moved_earlier_reschedules(live: Components, inbox: Inbox) -> None:
    later = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    sooner = later - timedelta(days=1)
    inbox.release("moving.md", publish_at=later.isoformat())
    scheduler = Scheduler(live.jobs, scan_interval=3600)
    await scheduler.start()
    try:
        inbox.release("moving.md", publish_at=sooner.isoformat())
        await scheduler.scan_now()
        assert scheduler.embargo_jobs() == {"moving": sooner}
        inbox.remove("moving.md")
        await scheduler.scan_now()
        assert scheduler.embargo_jobs() == {}
    finally:
        await scheduler.stop()


async def test_the_periodic_rescan_finds_a_file_the_watcher_never_reported(
    live: Components, inbox: Inbox
) -> None:
    """Watcher events can be lost (inotify overflow, network shares): no scan is requested here."""
    scheduler = Scheduler(live.jobs, scan_interval=0.5)
    await scheduler.start()
    try:
        await asyncio.sleep(0.1)  # the start-up scan has run: the folder was empty
        inbox.release("unannounced.md")
        await wait_until_visible(live, "unannounced", within=5)
    finally:
        await scheduler.stop()

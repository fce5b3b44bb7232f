"""APScheduler 3.x wiring: the periodic rescan, one date job per embargo, and a coalescing scan loop.

Orchestration only: every job body is a function in service.jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, timedelta, tzinfo

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from service import jobs
from service.delivery.dispatch import Dispatcher
from service.models import Frequency, ScanReport

log = logging.getLogger(__name__)
EMBARGO_PREFIX = "embargo:"


@dataclass(frozen=True, slots=True)
class DigestSchedule:
    """When digests go out, in the site's time zone."""

    hour: int
    minute: int
    weekday: str  # mon ... sun, for weekly digests
    timezone: tzinfo


class Scheduler:
    """Runs scans when asked (watcher, timer) and publishes embargoed releases on time."""

    def __init__(
        self,
        ctx: jobs.JobContext,
        scan_interval: float,
        dispatcher: Dispatcher | None = None,
        digests: DigestSchedule | None = None,
        heartbeat: float = 10.0,
    ) -> None:
        self._ctx = ctx
        self._heartbeat = heartbeat
        self._scans = 0
        self._digests = digests
        self._dispatcher = dispatcher
        self._stop = asyncio.Event()
        self._dispatch_task: asyncio.Task[None] | None = None
        self._scan_interval = scan_interval
        self._scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self._wanted = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Scan once, rebuild the embargo schedule from the database, then run in the background."""
        await self.scan_now()
        self._scheduler.add_job(
            self.request_scan,
            "interval",
            seconds=self._scan_interval,
            id="rescan",
            replace_existing=True,
        )
        if self._digests is not None:
            d = self._digests
            for frequency, days in ((Frequency.DAILY, "*"), (Frequency.WEEKLY, d.weekday)):
                self._scheduler.add_job(
                    jobs.queue_digests, "cron", args=[self._ctx, frequency], id=f"digest:{frequency}",
                    day_of_week=days, hour=d.hour, minute=d.minute, timezone=d.timezone,
                    replace_existing=True,
                )  # fmt: skip
        if self._ctx.cluster is not None:
            self._scheduler.add_job(
                self.beat, "interval", seconds=self._heartbeat, id="heartbeat", replace_existing=True
            )
            await self.beat()
        self._scheduler.start()
        await self.sync_embargoes()
        self._loop_task = asyncio.create_task(self._scan_loop(), name="scan-loop")
        if self._dispatcher is not None:
            self._dispatch_task = asyncio.create_task(self._dispatcher.run(self._stop), name="dispatcher")

    async def stop(self) -> None:
        """Stop timers and the scan loop (a scan in progress finishes its current file first)."""
        self._stop.set()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        if self._dispatch_task is not None:
            # Let the batch in flight finish so its outcomes reach the ledger.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._dispatch_task), timeout=30)
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._ctx.cluster is not None:
            with contextlib.suppress(Exception):  # stopping must not fail on a database that is gone
                await self._ctx.cluster.leave()

    async def beat(self) -> None:
        """The heartbeat job: tell the other nodes this one is alive and what it has done."""
        sent = self._dispatcher.sent if self._dispatcher is not None else 0
        assert self._ctx.cluster is not None
        now = self._ctx.clock.now()
        try:
            await self._ctx.cluster.heartbeat(now, f"{self._scans} scans, {sent} messages sent")
            alive = await self._ctx.cluster.nodes(now - timedelta(seconds=3 * self._heartbeat))
        except Exception:
            log.exception("heartbeat failed; retrying at the next one")
            return
        if self._dispatcher is not None:
            self._dispatcher.nodes_running(len(alive))

    def request_scan(self) -> None:
        """Ask for a scan soon; many requests while one runs become one more scan, never zero."""
        self._wanted.set()

    async def scan_now(self) -> ScanReport:
        """Scan immediately and reschedule embargoes if anything changed."""
        report = await jobs.scan(self._ctx)
        self._scans += 1
        # Always: another node may have ingested (or rescheduled) a release this node did not read.
        if self._scheduler.running:
            await self.sync_embargoes()
        return report

    async def _scan_loop(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            try:
                report = await self.scan_now()
            except Exception:
                log.exception("scan failed; retrying at the next request or interval")
                continue
            if report.deferred:
                # Files still being written: look again once they had time to settle.
                await asyncio.sleep(self._ctx.settle_seconds)
                self._wanted.set()

    async def sync_embargoes(self) -> None:
        """One date job per scheduled release, at its publish_at; stale ones removed."""
        wanted = {f"{EMBARGO_PREFIX}{rid}": at for rid, at in await self._ctx.releases.embargoes()}
        for job in self._scheduler.get_jobs():
            if job.id.startswith(EMBARGO_PREFIX) and job.id not in wanted:
                with contextlib.suppress(JobLookupError):
                    job.remove()
        for job_id, run_date in wanted.items():
            self._scheduler.add_job(
                self.publish_due, "date", run_date=run_date, id=job_id, replace_existing=True
            )

    def digest_jobs(self) -> dict[str, object]:
        """Digest job id -> next run time, for status and tests."""
        return {
            job.id: job.next_run_time for job in self._scheduler.get_jobs() if job.id.startswith("digest:")
        }

    def embargo_jobs(self) -> dict[str, object]:
        """Release id -> scheduled run time, for status and tests."""
        return {
            job.id.removeprefix(EMBARGO_PREFIX): job.next_run_time
            for job in self._scheduler.get_jobs()
            if job.id.startswith(EMBARGO_PREFIX)
        }

    async def publish_due(self) -> None:
        """The embargo job: publish whatever is due now."""
        await jobs.publish_due(self._ctx)

"""APScheduler 3.x wiring: the periodic rescan, one date job per embargo, and a coalescing scan loop.

Orchestration only: every job body is a function in service.jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from service import jobs
from service.models import ScanReport

log = logging.getLogger(__name__)
EMBARGO_PREFIX = "embargo:"


class Scheduler:
    """Runs scans when asked (watcher, timer) and publishes embargoed releases on time."""

    def __init__(self, ctx: jobs.JobContext, scan_interval: float) -> None:
        self._ctx = ctx
        self._scan_interval = scan_interval
        self._scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self._wanted = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self.last_report: ScanReport | None = None

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
        self._scheduler.start()
        await self.sync_embargoes()
        self._loop_task = asyncio.create_task(self._scan_loop(), name="scan-loop")

    async def stop(self) -> None:
        """Stop timers and the scan loop (a scan in progress finishes its current file first)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task

    def request_scan(self) -> None:
        """Ask for a scan soon; many requests while one runs become one more scan, never zero."""
        self._wanted.set()

    async def scan_now(self) -> ScanReport:
        """Scan immediately and reschedule embargoes if anything changed."""
        report = await jobs.scan(self._ctx)
        self.last_report = report
        if report.changed and self._scheduler.running:
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

"""Drain the ledger: claim a batch, compose, send concurrently, record every outcome in one write."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from service.clock import Clock
from service.delivery.compose import Composer
from service.delivery.mailer import Envelope, Mailer
from service.metrics import Metrics
from service.models import Outcome, SendResult
from service.store.ledger import Attempt, Claimed, Ledger

log = logging.getLogger(__name__)
_RECORD_RETRY_PAUSES = (0.2, 0.5, 1.0, 2.0)  # seconds; then one last try, whose error is raised
_FIRST_RETRY_SECONDS = 0.5  # after a failed drain; doubled while failures last, up to idle_poll
_QUEUE_GAUGE_SECONDS = 5.0  # during a drain, the queue_depth gauge is refreshed at most this often


@dataclass(frozen=True, slots=True)
class DispatchPolicy:
    """How the dispatcher claims and retries."""

    node: str
    batch: int = 50
    lease: timedelta = timedelta(minutes=2)
    concurrency: int = 4
    retry_unknown: bool = True
    unknown_delay: timedelta = timedelta(minutes=10)
    idle_poll: float = 5.0  # seconds between looks at the ledger when nothing woke us
    lanes: int = 2  # batches in progress at once
    shared_rate: bool = False  # the SMTP rate limit is for all nodes together (smtp_rate_scope: cluster)


class Dispatcher:
    """Sends what the ledger holds; safe to run on several nodes at once."""

    def __init__(
        self,
        ledger: Ledger,
        composer: Composer,
        mailer: Mailer,
        clock: Clock,
        metrics: Metrics,
        policy: DispatchPolicy,
    ) -> None:
        self._ledger = ledger
        self.composer = composer
        self._mailer = mailer
        self._clock = clock
        self._metrics = metrics
        self._policy = policy
        self._wake = asyncio.Event()
        # Bound once: a label lookup per message is a dict walk and a lock.
        self._outcomes = {
            name: metrics.deliveries.labels(outcome=name) for name in [*(o.value for o in Outcome), "skipped"]
        }
        self._gauged_at = -math.inf  # time.monotonic() of the last queue_depth update
        self.sent = 0  # messages accepted by the server since start (heartbeats report it)

    def nodes_running(self, count: int) -> None:
        """The heartbeats saw `count` nodes: take an equal share of a cluster-wide rate limit."""
        if self._policy.shared_rate:
            self._mailer.share(1 / max(count, 1))

    def wake(self) -> None:
        """Something was queued: look at the ledger now rather than at the next poll."""
        self._wake.set()

    async def drain_once(self) -> int:
        """Claim, send and record one batch; returns the number of rows handled (0: nothing due)."""
        policy = self._policy
        now = self._clock.now()
        rows = await self._ledger.claim(policy.node, policy.batch, now, policy.lease, policy.retry_unknown)
        if not rows:
            return 0
        # The lease says "this node is alive", not "a batch takes less than this": renew it while the
        # batch is in progress, so a slow relay never lets another node take rows still being sent.
        keeper = asyncio.create_task(self._keep_claim(rows), name="lease-keeper")
        try:
            return await self._send_batch(rows, now)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _keep_claim(self, rows: list[Claimed]) -> None:
        lease = self._policy.lease.total_seconds()
        while True:
            await asyncio.sleep(lease / 3)
            try:
                await self._ledger.renew(rows, self._clock.now() + self._policy.lease)
            except Exception:
                log.exception("could not renew a lease; the rows may be sent twice")

    async def _send_batch(self, rows: list[Claimed], now: datetime) -> int:
        policy = self._policy
        composed = await self.composer.compose(rows, now)
        for reason, ids in composed.skipped.items():
            await self._ledger.skip(ids, reason)
            self._outcomes["skipped"].inc(len(ids))
        gate = asyncio.Semaphore(policy.concurrency)
        by_id = {row.delivery_id: row for row in rows}

        async def send(delivery_id: int, envelope: Envelope, version: int | None) -> Attempt:
            async with gate:
                started = time.perf_counter()
                result = await self._send(envelope)
                self._metrics.send_seconds.observe(time.perf_counter() - started)
            return Attempt(
                delivery_id, by_id[delivery_id].subscriber_id, result, envelope.message_id, version
            )

        attempts = await asyncio.gather(
            *(send(did, env, version) for did, (env, version) in composed.envelopes.items())
        )
        await self._record(attempts)
        await self._gauge_queue(every=_QUEUE_GAUGE_SECONDS)
        self.sent += sum(a.result.outcome is Outcome.SENT for a in attempts)
        for attempt in attempts:
            self._outcomes[attempt.result.outcome.value].inc()
            if attempt.result.outcome is not Outcome.SENT:
                log.warning(
                    "delivery not accepted",
                    extra={"delivery": attempt.delivery_id, "outcome": attempt.result.outcome.value,
                           "reply": attempt.result.reply},
                )  # fmt: skip
        return len(rows)

    async def _record(self, attempts: list[Attempt]) -> None:
        # These messages are already with the relay: if the write fails (a dropped connection, a
        # lock timeout), try again on a fresh connection while the lease holds, rather than let the
        # lease run out and the whole batch be sent a second time.
        retry_unknown, unknown_delay = self._policy.retry_unknown, self._policy.unknown_delay
        for pause in _RECORD_RETRY_PAUSES:
            try:
                await self._ledger.record(attempts, self._clock.now(), retry_unknown, unknown_delay)
                return
            except Exception:
                log.warning("could not record a batch's outcomes; retrying", exc_info=True)
                await asyncio.sleep(pause)
        await self._ledger.record(attempts, self._clock.now(), retry_unknown, unknown_delay)

    async def _gauge_queue(self, every: float = 0.0) -> None:
        # A COUNT(*) of the queue: up to 100 ms with a million rows queued, so during a fan-out it is
        # refreshed every few seconds, not after every batch.
        if time.monotonic() - self._gauged_at >= every:
            self._gauged_at = time.monotonic()
            self._metrics.queue_depth.set(
                await self._ledger.pending(self._clock.now(), self._policy.retry_unknown)
            )

    async def _send(self, envelope: Envelope) -> SendResult:
        try:
            return await self._mailer.send(envelope)
        except Exception as exc:
            # A transport bug must cost a retry, not the row: the ledger keeps it.
            log.exception("mailer failed", extra={"message_id": envelope.message_id})
            return SendResult(Outcome.TEMPORARY, f"internal error: {type(exc).__name__}: {exc}")

    async def drain(self) -> int:
        """Send until nothing is due; returns the number of rows handled.

        Two batches are in progress at once, so the pool keeps sending while the other batch is
        being claimed, rendered or recorded (claims are exclusive: no row is taken twice).
        """

        async def lane() -> int:
            total = 0
            while (handled := await self.drain_once()) > 0:
                total += handled
            return total

        # Every lane finishes before an error is raised: a lane left running on its own while run()
        # starts new ones would put more than `lanes` batches in flight (and more duplicates at a crash).
        results = await asyncio.gather(*(lane() for _ in range(self._policy.lanes)), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return sum(r for r in results if isinstance(r, int))

    async def run(self, stop: asyncio.Event) -> None:
        """Drain continuously until `stop` is set; errors are logged and retried after a pause."""
        failures = 0
        while not stop.is_set():
            # Cleared before draining, not after: a wake() that comes during the drain (something
            # queued after the last claim found nothing) must start another drain, not wait a poll.
            self._wake.clear()
            try:
                await self.drain()
                await self._gauge_queue()
                failures, pause = 0, self._policy.idle_poll
            except Exception:
                log.exception("dispatcher failed; retrying")
                # Rows are still due after a database hiccup: retry soon, backing off to idle_poll
                # while the failure lasts (it is logged each time).
                failures += 1
                pause = min(self._policy.idle_poll, _FIRST_RETRY_SECONDS * 2 ** (failures - 1))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    waiter = asyncio.ensure_future(self._wake.wait())
                    stopper = asyncio.ensure_future(stop.wait())
                    try:
                        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        waiter.cancel()
                        stopper.cancel()

"""Crash test: SIGKILL the real service mid fan-out, restart it, and count what the SMTP server got.

Every subscriber must receive the bulletin; duplicates are bounded by the rows in flight when the
process died (one claimed batch). Figures are printed for the record.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from service.config import Settings
from tests.conftest import Inbox, make_settings, seed_confirmed
from tests.delivery.smtpd import SmtpServer
from tests.processes import free_port, start_service

pytestmark = pytest.mark.slow
AUDIENCE = 3000
BATCH = 50
LANES = 2  # DispatchPolicy.lanes: batches in flight at once


def start(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    return start_service(
        settings.data_dir.parent, free_port(), log,
        database_url=settings.effective_database_url, mail_transport="smtp", smtp_port=settings.smtp_port,
        dispatch_batch=BATCH, lease_seconds=2, settle_seconds=0, log_level="WARNING",
    )  # fmt: skip


async def wait_for_count(server: SmtpServer, target: int, within: float) -> None:
    async with asyncio.timeout(within):
        while len({m.rcpt_tos[0] for m in server.messages}) < target:  # noqa: ASYNC110 - polling a counter
            await asyncio.sleep(0.02)


async def test_sigkill_mid_fan_out_loses_nobody(
    tmp_path: Path, database_url: str, server: SmtpServer
) -> None:
    settings = make_settings(tmp_path, database_url=database_url, smtp_port=server.port)
    await seed_confirmed(settings, AUDIENCE)
    Inbox(settings.announcements_dir).release(
        "news.md", date=(datetime.now(UTC) - timedelta(hours=1)).isoformat()
    )
    log = tmp_path / "service.log"
    first = start(settings, log)
    try:
        await wait_for_count(server, AUDIENCE // 3 + BATCH // 2, within=60)  # mid-batch
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        killed_at = len(server.messages)
        restarted_at = time.monotonic()
        second = start(settings, log)
        try:
            await wait_for_count(server, AUDIENCE, within=90)
            recovery = time.monotonic() - restarted_at
        finally:
            second.terminate()
            second.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    per_address = Counter(m.rcpt_tos[0] for m in server.messages)
    duplicates = sum(n - 1 for n in per_address.values())
    backend = database_url.split(":")[0]
    print(
        f"\ncrash test ({backend}): expected {AUDIENCE}, received {len(per_address)} distinct, "
        f"duplicates {duplicates} (bound {BATCH * LANES}), killed after {killed_at}, "
        f"all in {recovery:.1f} s after restart"
    )
    assert len(per_address) == AUDIENCE
    assert duplicates <= BATCH * LANES
    assert "Traceback" not in log.read_text()

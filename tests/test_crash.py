"""Crash test: SIGKILL the real service mid fan-out, restart it, and count what the SMTP server got.

Every subscriber must receive the bulletin; duplicates are bounded by the rows in flight when the
process died (one claimed batch). Figures are printed for the record.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert

from service.config import Settings
from service.runtime import build
from service.store.schema import subscribers
from tests.conftest import REPO, Inbox, make_settings
from tests.delivery.smtpd import SmtpServer
from tests.test_service_process import free_port

pytestmark = pytest.mark.slow
AUDIENCE = 3000
BATCH = 50
LANES = 2  # DispatchPolicy.lanes: batches in flight at once


async def seed(settings: Settings) -> None:
    parts = build(settings)
    await parts.database.migrate()
    now = datetime.now(UTC)
    rows = [
        {
            "email": f"s{n:05d}@example.com", "state": "confirmed", "all_topics": True, "lang": "en",
            "frequency": "immediate", "generation": 1, "consent_method": "import", "consent_source": "test",
            "consent_at": now, "created_at": now, "confirmed_at": now,
        }
        for n in range(AUDIENCE)
    ]  # fmt: skip
    async with parts.database.engine.begin() as conn:
        await conn.execute(insert(subscribers), rows)
    await parts.close()


def start(settings: Settings, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ANNOUNCE_ANNOUNCEMENTS_DIR": str(settings.announcements_dir),
        "ANNOUNCE_DATA_DIR": str(settings.data_dir),
        "ANNOUNCE_TEMPLATES_DIR": str(REPO / "templates"),
        "ANNOUNCE_DATABASE_URL": settings.effective_database_url,
        "ANNOUNCE_MAIL_TRANSPORT": "smtp",
        "ANNOUNCE_SMTP_PORT": str(settings.smtp_port),
        "ANNOUNCE_DISPATCH_BATCH": str(BATCH),
        "ANNOUNCE_LEASE_SECONDS": "2",
        "ANNOUNCE_SETTLE_SECONDS": "0",
        "ANNOUNCE_LOG_LEVEL": "WARNING",
    }
    command = [
        sys.executable,
        "-m",
        "service",
        "run",
        "--port",
        str(port),
        "--config",
        str(REPO / "config.yaml"),
    ]
    with log.open("ab") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


async def wait_for_count(server: SmtpServer, target: int, within: float) -> None:
    async with asyncio.timeout(within):
        while len({m.rcpt_tos[0] for m in server.messages}) < target:  # noqa: ASYNC110 - polling a counter
            await asyncio.sleep(0.02)


async def test_sigkill_mid_fan_out_loses_nobody(
    tmp_path: Path, database_url: str, server: SmtpServer
) -> None:
    settings = make_settings(tmp_path, database_url=database_url, smtp_port=server.port)
    await seed(settings)
    Inbox(settings.announcements_dir).release(
        "news.md", date=(datetime.now(UTC) - timedelta(hours=1)).isoformat()
    )
    log = tmp_path / "service.log"
    first = start(settings, free_port(), log)
    try:
        await wait_for_count(server, AUDIENCE // 3 + BATCH // 2, within=60)  # mid-batch
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        killed_at = len(server.messages)
        restarted_at = time.monotonic()
        second = start(settings, free_port(), log)
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

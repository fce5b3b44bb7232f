"""Several `announce run` processes on one PostgreSQL database and one folder (real processes).

Every subscriber gets each release exactly once, the work is shared, a node killed mid fan-out is
finished by the others after its lease, racing nodes publish an embargo once, and nodes started
together on an empty database migrate it once. Figures are printed for the record.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import func, select

from service.config import Settings
from service.models import DeliveryState
from service.runtime import build
from service.store.schema import deliveries, nodes, releases
from tests.conftest import Inbox, make_settings, seed_confirmed
from tests.delivery.smtpd import SmtpServer
from tests.processes import free_port, healthy, start_service

pytestmark = pytest.mark.slow
BATCH = 200
LANES = 2  # DispatchPolicy.lanes
SECRET = "cluster-test-secret-" + "x" * 40  # every node must sign links with the same key


@pytest.fixture
async def pg(postgres_url: str | None) -> str:
    """An empty PostgreSQL schema (these tests are about PostgreSQL only)."""
    if postgres_url is None:
        pytest.skip("PostgreSQL not reachable")
    conn = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()
    return postgres_url


def cluster_settings(tmp_path: Path, url: str, server: SmtpServer) -> Settings:
    return make_settings(tmp_path, database_url=url, smtp_port=server.port, secret_key=SECRET)


@dataclass
class Nodes:
    """`announce run` processes on one database and folder; only these are stopped at the end."""

    settings: Settings
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    bases: list[str] = field(default_factory=list)

    def add(self) -> subprocess.Popen[bytes]:
        """Start one more node and wait until it answers."""
        port, folder = free_port(), self.settings.data_dir.parent
        process = start_service(
            folder, port, folder / f"node{len(self.processes)}.log",
            database_url=self.settings.effective_database_url, mail_transport="smtp",
            smtp_port=self.settings.smtp_port, secret_key=SECRET, dispatch_batch=BATCH, lease_seconds=3,
            settle_seconds=0, heartbeat_seconds=1, log_level="WARNING",
        )  # fmt: skip
        self.processes.append(process)
        self.bases.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 40
        while not healthy(self.bases[-1]):
            assert process.poll() is None, "a node died while starting"
            assert time.monotonic() < deadline, "the node did not start"
            time.sleep(0.1)
        return process

    def stop(self) -> None:
        """SIGTERM every node still running, then wait (SIGKILL after 30 s)."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@contextmanager
def nodes_running(settings: Settings, count: int) -> Iterator[Nodes]:
    """`count` nodes started one after the other (more may be added); all stopped at the end."""
    nodes = Nodes(settings)
    try:
        for _ in range(count):
            nodes.add()
        yield nodes
    finally:
        nodes.stop()


async def wait_for(server: SmtpServer, distinct: int, within: float) -> None:
    async with asyncio.timeout(within):
        while len({m.rcpt_tos[0] for m in server.messages}) < distinct:  # noqa: ASYNC110 - a counter
            await asyncio.sleep(0.05)


async def sent_by_node(settings: Settings) -> dict[str, int]:
    parts = build(settings)
    try:
        async with parts.database.engine.connect() as conn:
            rows = await conn.execute(
                select(deliveries.c.claimed_by, func.count())
                .where(deliveries.c.state == DeliveryState.SENT)
                .group_by(deliveries.c.claimed_by)
            )
            split: Counter[str] = Counter()
            for token, count in rows:
                split[str(token).split("#")[0]] += int(count)
            return dict(split)
    finally:
        await parts.close()


def logs(settings: Settings) -> str:
    return "".join(p.read_text() for p in sorted(settings.data_dir.parent.glob("node*.log")))


def recent() -> str:
    return (datetime.now(UTC) - timedelta(hours=1)).isoformat()


async def test_three_nodes_mail_every_subscriber_exactly_once(
    tmp_path: Path, pg: str, server: SmtpServer
) -> None:
    audience = 20_000
    settings = cluster_settings(tmp_path, pg, server)
    await seed_confirmed(settings, audience)
    with nodes_running(settings, 3) as running:
        started = time.monotonic()
        Inbox(settings.announcements_dir).release("news.md", date=recent())
        await wait_for(server, audience, within=300)
        seconds = time.monotonic() - started
        await asyncio.sleep(1.5)  # let a late duplicate, if any, arrive before counting
        async with httpx.AsyncClient(timeout=5) as http:
            answers = [await http.get(f"{base}/feed.atom") for base in running.bases]
        assert {a.headers["etag"] for a in answers} == {answers[0].headers["etag"]}, "ETags differ"
        assert {a.content for a in answers} == {answers[0].content}
    per_address = Counter(m.rcpt_tos[0] for m in server.messages)
    split = await sent_by_node(settings)
    print(
        f"\n3 nodes: {audience} subscribers, received {len(per_address)} distinct, "
        f"{sum(per_address.values())} messages in {seconds:.1f} s; "
        f"split {sorted(split.values(), reverse=True)}"
    )
    assert len(per_address) == audience
    assert max(per_address.values()) == 1
    assert len(split) == 3, f"not every node sent: {split}"
    assert min(split.values()) >= audience // 10, f"work not shared: {split}"
    assert "Traceback" not in logs(settings)


async def test_nodes_join_and_die_mid_fan_out_and_nobody_is_lost(
    tmp_path: Path, pg: str, server: SmtpServer
) -> None:
    audience = 6_000
    settings = cluster_settings(tmp_path, pg, server)
    await seed_confirmed(settings, audience)
    with nodes_running(settings, 2) as running:
        Inbox(settings.announcements_dir).release("news.md", date=recent())
        await wait_for(server, audience // 4, within=120)
        running.add()  # joins while the fan-out runs
        await wait_for(server, audience // 2, within=120)
        victim = running.processes[0]
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        killed_at = time.monotonic()
        await wait_for(server, audience, within=180)
        recovery = time.monotonic() - killed_at
    per_address = Counter(m.rcpt_tos[0] for m in server.messages)
    duplicates = sum(n - 1 for n in per_address.values())
    split = await sent_by_node(settings)
    print(
        f"\n2 nodes, a third joining at 1/4, the first killed at 1/2: expected {audience}, "
        f"received {len(per_address)} distinct, duplicates {duplicates} (bound {BATCH * LANES}), "
        f"done {recovery:.1f} s after the kill; split {sorted(split.values(), reverse=True)}"
    )
    assert len(per_address) == audience
    assert duplicates <= BATCH * LANES
    assert len(split) == 3, f"the node that joined sent nothing: {split}"


async def test_two_nodes_racing_on_an_embargo_publish_and_mail_once(
    tmp_path: Path, pg: str, server: SmtpServer
) -> None:
    audience = 300
    settings = cluster_settings(tmp_path, pg, server)
    await seed_confirmed(settings, audience)
    with nodes_running(settings, 2):
        embargo = datetime.now(UTC) + timedelta(seconds=4)
        Inbox(settings.announcements_dir).release(
            "embargoed.md", date=recent(), publish_at=embargo.isoformat()
        )
        await wait_for(server, audience, within=60)
        await asyncio.sleep(2)  # both nodes' embargo jobs have fired by now
    per_address = Counter(m.rcpt_tos[0] for m in server.messages)
    assert len(per_address) == audience
    assert max(per_address.values()) == 1
    assert datetime.now(UTC) > embargo
    parts = build(settings)
    try:
        async with parts.database.engine.connect() as conn:
            published = (await conn.execute(select(releases.c.published_at, releases.c.fanout_at))).one()
    finally:
        await parts.close()
    assert published.published_at >= embargo
    assert published.fanout_at is not None


async def test_nodes_started_together_migrate_an_empty_database_once(
    tmp_path: Path, pg: str, server: SmtpServer
) -> None:
    settings = cluster_settings(tmp_path, pg, server)
    with nodes_running(settings, 3):
        await asyncio.sleep(2.5)  # two heartbeats
        parts = build(settings)
        try:
            async with parts.database.engine.connect() as conn:
                seen = (await conn.execute(select(func.count()).select_from(nodes))).scalar_one()
        finally:
            await parts.close()
    assert seen == 3
    assert "Traceback" not in logs(settings)
    assert "cannot open or migrate" not in logs(settings)

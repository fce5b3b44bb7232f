"""The cluster repository on SQLite and PostgreSQL: heartbeats, job runs and the exclusive lock."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from service.runtime import Components, build
from service.store.cluster import Cluster
from tests.conftest import START, FakeClock


async def test_heartbeats_list_the_nodes_seen_recently(parts: Components, clock: FakeClock) -> None:
    one, two = Cluster(parts.database, "one:1"), Cluster(parts.database, "two:2")
    await one.heartbeat(clock.now(), "starting")
    clock.advance(seconds=30)
    await two.heartbeat(clock.now(), "0 scans")
    await one.heartbeat(clock.now(), "3 scans, 10 messages sent")
    seen = await one.nodes(clock.now() - timedelta(seconds=10))
    assert [(n.name, n.started_at, n.activity) for n in seen] == [
        ("one:1", START, "3 scans, 10 messages sent"),
        ("two:2", clock.now(), "0 scans"),
    ]
    clock.advance(seconds=60)
    await two.heartbeat(clock.now(), "1 scan")
    assert [n.name for n in await one.nodes(clock.now() - timedelta(seconds=30))] == ["two:2"]
    await two.leave()
    assert [n.name for n in await one.nodes(START)] == ["one:1"]  # a clean stop forgets the node


async def test_a_job_run_is_recorded_once(parts: Components, clock: FakeClock) -> None:
    one, two = Cluster(parts.database, "one:1"), Cluster(parts.database, "two:2")
    assert not await two.has_run("digest:daily", "2026-11-24")
    await one.record_run("digest:daily", "2026-11-24", clock.now())
    await two.record_run("digest:daily", "2026-11-24", clock.now())  # the first record is kept
    assert await two.has_run("digest:daily", "2026-11-24")
    assert not await two.has_run("digest:daily", "2026-11-25")
    assert await two.runs("digest:daily") == [("2026-11-24", "one:1", clock.now())]


async def test_the_exclusive_lock_makes_nodes_take_turns(parts: Components) -> None:
    # Two Cluster objects on two engines: on PostgreSQL, two sessions, as two nodes would have.
    other_parts = build(parts.settings)
    try:
        one, two = Cluster(parts.database, "one:1"), Cluster(other_parts.database, "two:2")
        order: list[str] = []

        async def work(cluster: Cluster, name: str) -> None:
            async with cluster.exclusive("scan"):
                order.append(f"{name} in")
                await asyncio.sleep(0.2)
                order.append(f"{name} out")

        await asyncio.wait_for(asyncio.gather(work(one, "a"), work(two, "b")), timeout=10)
    finally:
        await other_parts.close()
    if parts.database.dialect == "postgresql":
        assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])
    else:  # SQLite is one node: the lock is per process (per Cluster object)
        assert sorted(order) == ["a in", "a out", "b in", "b out"]

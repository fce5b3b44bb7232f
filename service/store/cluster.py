"""Several nodes on one database: who is alive, which node ran a job, and cluster-wide locks.

PostgreSQL is the coordination engine: advisory locks for work that must not overlap (a scan of
the shared folder, a migration, a digest run) and a row per finished job run, so that the nodes
that wake up for the same run after the first find it done. On SQLite (one node) the locks are
process-local.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, text
from sqlalchemy.dialects import postgresql, sqlite

from service.store.database import Database, lock_key
from service.store.schema import job_runs, nodes


@dataclass(frozen=True, slots=True)
class Node:
    """A node as its last heartbeat described it."""

    name: str
    started_at: datetime
    seen_at: datetime
    activity: str


class Cluster:
    """Repository of nodes and job runs, and the cluster-wide locks."""

    def __init__(self, db: Database, node: str) -> None:
        self._db = db
        self.node = node
        self._local: dict[str, asyncio.Lock] = {}

    async def heartbeat(self, now: datetime, activity: str) -> None:
        """Say this node is alive and what it is doing."""
        dialect = postgresql if self._db.dialect == "postgresql" else sqlite
        statement = dialect.insert(nodes).values(
            name=self.node, started_at=now, seen_at=now, activity=activity
        )
        async with self._db.engine.begin() as conn:
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["name"], set_={"seen_at": now, "activity": activity}
                )
            )

    async def leave(self) -> None:
        """Forget this node (a clean stop)."""
        async with self._db.engine.begin() as conn:
            await conn.execute(delete(nodes).where(nodes.c.name == self.node))

    async def nodes(self, seen_since: datetime) -> list[Node]:
        """Nodes whose last heartbeat is at or after `seen_since`, by name."""
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(
                select(nodes).where(nodes.c.seen_at >= seen_since).order_by(nodes.c.name)
            )
            return [Node(r.name, r.started_at, r.seen_at, r.activity) for r in rows]

    async def has_run(self, job: str, run: str) -> bool:
        """True once some node recorded this run of `job` as done."""
        async with self._db.engine.connect() as conn:
            found = await conn.execute(
                select(job_runs.c.node).where(job_runs.c.job == job, job_runs.c.run == run)
            )
            return found.first() is not None

    async def record_run(self, job: str, run: str, now: datetime) -> None:
        """Record that this node finished this run of `job` (a run recorded first by another node is kept)."""
        dialect = postgresql if self._db.dialect == "postgresql" else sqlite
        statement = dialect.insert(job_runs).values(job=job, run=run, node=self.node, claimed_at=now)
        async with self._db.engine.begin() as conn:
            await conn.execute(statement.on_conflict_do_nothing(index_elements=["job", "run"]))

    async def runs(self, job: str, limit: int = 5) -> list[tuple[str, str, datetime]]:
        """(run, node, when) of the latest recorded runs of `job`, newest first."""
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(
                select(job_runs.c.run, job_runs.c.node, job_runs.c.claimed_at)
                .where(job_runs.c.job == job)
                .order_by(job_runs.c.claimed_at.desc())
                .limit(limit)
            )
            return [(r.run, r.node, r.claimed_at) for r in rows]

    @asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[None]:
        """Hold the cluster-wide lock `name` (waiting for the node that holds it) for the block."""
        local = self._local.setdefault(name, asyncio.Lock())
        async with local:
            if self._db.dialect != "postgresql":
                yield
                return
            # A session lock on a connection of its own: the block uses other connections, and if
            # this node dies its connection closes and the lock is released.
            async with self._db.engine.connect() as conn:
                await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": lock_key(name)})
                await conn.commit()
                try:
                    yield
                finally:
                    await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": lock_key(name)})
                    await conn.commit()

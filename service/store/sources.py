"""What the scanner knows about each file in the drop folder, its problems, and the last scan."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from service.models import FileProblem, ScanReport
from service.store.database import Database
from service.store.schema import site_state, sources


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """The last state of one file as the scanner saw it."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    release_id: str | None
    problem: FileProblem | None
    deps: tuple[Dependency, ...] = ()


@dataclass(frozen=True, slots=True)
class Dependency:
    """A file a release lists (an attachment), as last seen: a change to it re-reads the release."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class FileSeen:
    """A file's identity as read by one scan."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    deps: tuple[Dependency, ...] = ()


@dataclass(frozen=True, slots=True)
class LastScan:
    """Summary of the most recent scan."""

    at: datetime
    seconds: float
    files: int
    problems: int


class Sources:
    """Repository of scanned files."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def snapshot(self) -> dict[str, SourceRecord]:
        """Every known file by path."""
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(select(sources))
            return {r.path: _record(r) for r in rows}

    async def record(
        self,
        seen: FileSeen,
        now: datetime,
        *,
        release_id: str | None = None,
        problem: FileProblem | None = None,
    ) -> None:
        """Remember a file's stat and outcome (a release id, or a problem)."""
        values = {
            "path": seen.path,
            "size": seen.size,
            "mtime_ns": seen.mtime_ns,
            "sha256": seen.sha256,
            "deps": [[d.path, d.size, d.mtime_ns] for d in seen.deps],
            "checked_at": now,
            "release_id": release_id,
            "error_reason": problem.reason if problem else None,
            "error_line": problem.line if problem else None,
            "error_hint": problem.hint if problem else None,
        }
        async with self._db.engine.begin() as conn:
            await _upsert(conn, values)

    async def forget(self, paths: Collection[str]) -> None:
        """Drop files that are no longer in the folder."""
        if not paths:
            return
        async with self._db.engine.begin() as conn:
            batch = list(paths)
            for start in range(0, len(batch), 500):
                await conn.execute(delete(sources).where(sources.c.path.in_(batch[start : start + 500])))

    async def problems(self) -> list[FileProblem]:
        """Files currently refused, sorted by path."""
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(
                select(sources).where(sources.c.error_reason.is_not(None)).order_by(sources.c.path)
            )
            return [p for r in rows if (p := _record(r).problem) is not None]

    async def record_scan(self, report: ScanReport, now: datetime) -> None:
        """Keep the figures of the scan that just finished."""
        async with self._db.engine.begin() as conn:
            await conn.execute(
                update(site_state)
                .where(site_state.c.id == 1)
                .values(
                    last_scan_at=now,
                    last_scan_seconds=report.seconds,
                    last_scan_files=report.files,
                    last_scan_problems=len(report.problems),
                )
            )

    async def last_scan(self) -> LastScan | None:
        """The most recent scan's summary, if any scan ran."""
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(select(site_state).where(site_state.c.id == 1))).first()
        if row is None or row.last_scan_at is None:
            return None
        return LastScan(row.last_scan_at, row.last_scan_seconds, row.last_scan_files, row.last_scan_problems)


def _record(row: object) -> SourceRecord:
    m = row._mapping  # type: ignore[attr-defined]
    problem = None
    if m["error_reason"] is not None:
        problem = FileProblem(m["path"], m["error_reason"], m["error_line"], m["error_hint"] or "")
    deps = tuple(Dependency(str(p), int(size), int(mtime)) for p, size, mtime in m["deps"] or ())
    return SourceRecord(m["path"], m["size"], m["mtime_ns"], m["sha256"], m["release_id"], problem, deps)


async def _upsert(conn: AsyncConnection, values: dict[str, object]) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(sources).values(**values)
    changed = {k: statement.excluded[k] for k in values if k != "path"}
    await conn.execute(statement.on_conflict_do_update(index_elements=["path"], set_=changed))

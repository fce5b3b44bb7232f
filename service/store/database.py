"""The database connection: one async engine per process, migrations, and a health check."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.errors import StoreError
from service.store.schema import site_state

MIGRATIONS = Path(__file__).with_name("migrations")


class Database:
    """Owns the engine; repositories borrow it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @property
    def dialect(self) -> str:
        """'sqlite' or 'postgresql'."""
        return self.engine.dialect.name

    async def migrate(self) -> None:
        """Bring the schema to the newest version and create the singleton rows."""
        try:
            async with self.engine.begin() as conn:
                if self.dialect == "postgresql":
                    # Nodes starting together take turns: the first migrates, the others find it done.
                    await conn.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key("migrate")}
                    )
                await conn.run_sync(_upgrade)
                if (await conn.execute(select(site_state.c.id))).first() is None:
                    epoch = datetime(1970, 1, 1, tzinfo=UTC)
                    await conn.execute(insert(site_state).values(id=1, revision=0, changed_at=epoch))
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"cannot open or migrate the database: {exc}") from exc

    async def ping(self) -> None:
        """Raise StoreError unless the database answers a trivial query."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"database unreachable: {exc}") from exc

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


def lock_key(name: str) -> int:
    """The 64-bit PostgreSQL advisory lock number of a named lock (the same on every node)."""
    return int.from_bytes(hashlib.sha256(f"announce:{name}".encode()).digest()[:8], "big", signed=True)


def _upgrade(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (HTTP) proceed while the scanner writes; FULL keeps commits durable.
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=10000"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def open_database(url: str) -> Database:
    """Create the engine for `url` (sqlite+aiosqlite or postgresql+asyncpg); creates SQLite's folder."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        engine = create_async_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True)
    return Database(engine)

"""Shared fixtures: a temporary inbox, SQLite and PostgreSQL databases, a fake clock, an ASGI client."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml
from sqlalchemy import insert

from service import jobs
from service.config import Settings
from service.runtime import Components, build, make_app
from service.store.schema import subscribers
from tests.delivery.smtpd import SmtpServer, smtp_server

REPO = Path(__file__).resolve().parents[1]
POSTGRES_ADMIN = os.environ.get("ANNOUNCE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
START = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """Commands under test configure logging (a handler on pytest's captured stream): undo it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the slow tests (real processes, timing) one after another on one xdist worker."""
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(pytest.mark.xdist_group("slow"))


class FakeClock:
    """The one thing tests mock: time."""

    def __init__(self, now: datetime = START) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> None:
        self._now += timedelta(**delta)

    def set(self, moment: datetime) -> None:
        self._now = moment


def release_text(
    title: str = "A release", date: str = "2026-11-20", body: str = "Body text.", **fields: Any
) -> str:
    """A Markdown release file with the given front matter."""
    front = {"title": title, "date": date, **fields}
    return "---\n" + yaml.safe_dump(front, allow_unicode=True, sort_keys=False) + "---\n\n" + body + "\n"


class Inbox:
    """The temporary announcements folder; files are back-dated so they count as settled."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def write(self, name: str, text: str | bytes, *, age: float = 10.0) -> Path:
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        stamp = time.time_ns() - int(age * 1e9)
        os.utime(path, ns=(stamp, stamp))
        return path

    def release(self, name: str, **fields: Any) -> Path:
        return self.write(name, release_text(**fields))

    def remove(self, name: str) -> None:
        (self.folder / name).unlink()


# ---- databases -----------------------------------------------------------------------------------


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(POSTGRES_ADMIN, timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    """A fresh PostgreSQL database for this test run, dropped at the end; None if unreachable (not in CI)."""
    name = f"announce_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL must be reachable in CI ({POSTGRES_ADMIN}): {exc}")
        yield None
        return
    base = POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    yield f"{base}/{name}"
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str | None) -> str:
    """Each database test runs on SQLite and on PostgreSQL, each time on an empty schema."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'var' / 'announce.db'}"
    if postgres_url is None:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_ADMIN}")
    return await empty_postgres(postgres_url)


async def empty_postgres(url: str) -> str:
    """Drop everything in the test database's public schema; returns `url`."""
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()
    return url


# ---- the service ---------------------------------------------------------------------------------


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for a service rooted in tmp_path, with the repository's templates."""
    values: dict[str, Any] = {
        "announcements_dir": tmp_path / "announcements",
        "data_dir": tmp_path / "var",
        "templates_dir": REPO / "templates",
        "base_url": "https://press.example.org",
        "settle_seconds": 0.2,
        **overrides,
    }
    return Settings(**values)


def write_config(folder: Path, **overrides: Any) -> Path:
    """A config.yaml for a service rooted in `folder` (SQLite, file outbox), for command-line tests."""
    folder.mkdir(parents=True, exist_ok=True)
    values = {
        "announcements_dir": "announcements", "data_dir": "var", "templates_dir": str(REPO / "templates"),
        "base_url": "https://press.example.org", "settle_seconds": 0, **overrides,
    }  # fmt: skip
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url=database_url)


@pytest.fixture
def inbox(settings: Settings) -> Inbox:
    return Inbox(settings.announcements_dir)


@pytest.fixture
async def parts(settings: Settings, clock: FakeClock) -> AsyncIterator[Components]:
    """Every component, built and migrated, on the fake clock; nothing running in the background."""
    components = build(settings, clock)
    await components.database.migrate()
    yield components
    await components.close()


@pytest.fixture
async def client(parts: Components) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the real ASGI app (no scheduler: tests drive scans themselves)."""
    transport = httpx.ASGITransport(app=make_app(parts))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


# ---- mail ------------------------------------------------------------------------------------------

RECENT = (START - timedelta(days=1)).date().isoformat()  # recent enough to be mailed


@pytest.fixture
async def server() -> AsyncIterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) in the test's event loop, with fault injection."""
    async with smtp_server() as running:
        yield running


@pytest.fixture
def mail_overrides() -> dict[str, Any]:
    """More settings for the `mail` fixture: a test parametrizes this name to change them."""
    return {}


def mail_settings(tmp_path: Path, database_url: str, server: SmtpServer, **overrides: Any) -> Settings:
    """Settings of a service sending through `server` (the `mail` fixture's); `overrides` win."""
    values: dict[str, Any] = {
        "database_url": database_url, "mail_transport": "smtp", "smtp_port": server.port, "smtp_timeout": 2,
        "mail_from": "press@example.org", "mail_from_name": "Example Press Office", **overrides,
    }  # fmt: skip
    return make_settings(tmp_path, **values)


@pytest.fixture
async def mail(
    tmp_path: Path, database_url: str, clock: FakeClock, server: SmtpServer, mail_overrides: dict[str, Any]
) -> AsyncIterator[Components]:
    """The service sending through `server`, on the fake clock; the dispatcher is driven by the test."""
    settings = mail_settings(tmp_path, database_url, server, **mail_overrides)
    parts = build(settings, clock)
    await parts.database.migrate()
    yield parts
    await parts.close()


async def seed_confirmed(settings: Settings, audience: int) -> None:
    """Migrate the database of `settings` and add `audience` confirmed all-topic subscribers, fast."""
    parts = build(settings)
    await parts.database.migrate()
    now = datetime.now(UTC)
    rows = [
        {
            "email": f"s{n:06d}@example.com", "state": "confirmed", "all_topics": True, "lang": "en",
            "frequency": "immediate", "generation": 1, "consent_method": "import", "consent_source": "test",
            "consent_at": now, "created_at": now, "confirmed_at": now,
        }
        for n in range(audience)
    ]  # fmt: skip
    async with parts.database.engine.begin() as conn:
        for start in range(0, audience, 5000):
            await conn.execute(insert(subscribers), rows[start : start + 5000])
    await parts.close()


async def publish(parts: Components, name: str = "news.md", **fields: Any) -> None:
    """Drop a recent release into the inbox and scan it in."""
    Inbox(parts.settings.announcements_dir).release(name, date=RECENT, **fields)
    await jobs.scan(parts.jobs)

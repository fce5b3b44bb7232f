"""Fixtures for the HTTP tests: the sample releases scanned in, and services with their own settings."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.runtime import Components, build, make_app
from tests.conftest import FakeClock, Inbox, make_settings
from tests.web.support import NEWEST_FIRST, scan, write_sample


@dataclass
class Service:
    """A service built with non-default settings, and a client for its ASGI app."""

    parts: Components
    http: httpx.AsyncClient


StartService = Callable[..., Awaitable[Service]]


@pytest.fixture
async def sample(inbox: Inbox, parts: Components) -> list[str]:
    """The sample releases, scanned into the store; their ids newest first."""
    write_sample(inbox)
    report = await scan(parts)
    assert sorted(report.created) == sorted(NEWEST_FIRST)
    return NEWEST_FIRST


@pytest.fixture
async def start_service(tmp_path: Path, database_url: str, clock: FakeClock) -> AsyncIterator[StartService]:
    """Build a service on the test's database and inbox with settings overridden (feed_size=2, ...)."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**overrides: Any) -> Service:
            settings = make_settings(tmp_path, database_url=database_url, **overrides)
            parts = build(settings, clock)
            stack.push_async_callback(parts.close)
            await parts.database.migrate()
            transport = httpx.ASGITransport(app=make_app(parts))
            http = httpx.AsyncClient(transport=transport, base_url="http://testserver")
            await stack.enter_async_context(http)
            return Service(parts, http)

        yield start

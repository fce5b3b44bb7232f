"""WebSub: feeds advertise the hub, and each publication pings it, checked against a real HTTP listener."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest

from service import jobs
from service.runtime import Components, build, make_app
from tests.conftest import FakeClock, Inbox, make_settings


@dataclass
class Hub:
    """A minimal HTTP server that records each POST body and answers with a fixed status."""

    status: int = 204
    pings: list[list[tuple[str, str]]] = field(default_factory=list)
    url: str = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        body = await reader.readexactly(length)
        self.pings.append(parse_qsl(body.decode()))
        writer.write(f"HTTP/1.1 {self.status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode())
        await writer.drain()
        writer.close()


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    recorder = Hub()
    server = await asyncio.start_server(recorder.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    recorder.url = f"http://127.0.0.1:{port}/hub"
    async with server:
        yield recorder


async def service_with_hub(tmp_path: Path, hub_url: str) -> Components:
    settings = make_settings(
        tmp_path, websub_hub=hub_url, database_url=f"sqlite+aiosqlite:///{tmp_path}/db.sqlite"
    )
    parts = build(settings, FakeClock())
    await parts.database.migrate()
    return parts


async def test_publication_pings_the_hub_with_changed_feeds(tmp_path: Path, hub: Hub) -> None:
    parts = await service_with_hub(tmp_path, hub.url)
    inbox = Inbox(parts.settings.announcements_dir)
    inbox.release("one.md", topics=["awards"])
    await jobs.scan(parts.jobs)
    assert len(hub.pings) == 1
    form = hub.pings[0]
    assert ("hub.mode", "publish") in form
    urls = {value for key, value in form if key == "hub.url"}
    assert "https://press.example.org/feed.atom" in urls
    assert "https://press.example.org/topics/awards/feed.rss" in urls
    await jobs.scan(parts.jobs)  # nothing changed: no ping
    assert len(hub.pings) == 1
    await parts.close()


async def test_feeds_advertise_the_hub(tmp_path: Path, hub: Hub) -> None:
    parts = await service_with_hub(tmp_path, hub.url)
    Inbox(parts.settings.announcements_dir).release("one.md")
    await jobs.scan(parts.jobs)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=make_app(parts)), base_url="http://t"
    ) as client:
        atom = (await client.get("/feed.atom")).text
    assert f'href="{hub.url}" rel="hub"' in atom
    assert 'href="https://press.example.org/feed.atom" rel="self"' in atom
    await parts.close()


async def test_a_failing_hub_never_breaks_publication(tmp_path: Path, hub: Hub) -> None:
    hub.status = 500
    parts = await service_with_hub(tmp_path, hub.url)
    Inbox(parts.settings.announcements_dir).release("one.md")
    report = await jobs.scan(parts.jobs)
    assert report.created == ("one",)
    assert 'announce_websub_pings_total{outcome="failed"} 1.0' in parts.metrics.render().decode()
    await parts.close()


async def test_withdrawal_and_topic_changes_ping_the_topics_left(tmp_path: Path, hub: Hub) -> None:
    parts = await service_with_hub(tmp_path, hub.url)
    inbox = Inbox(parts.settings.announcements_dir)
    inbox.release("one.md", topics=["awards"])
    await jobs.scan(parts.jobs)
    inbox.release("one.md", topics=["research"], title="Moved to research")
    await jobs.scan(parts.jobs)
    edited = {value for key, value in hub.pings[-1] if key == "hub.url"}
    assert "https://press.example.org/topics/awards/feed.atom" in edited
    assert "https://press.example.org/topics/research/feed.atom" in edited
    inbox.remove("one.md")
    await jobs.scan(parts.jobs)
    withdrawn = {value for key, value in hub.pings[-1] if key == "hub.url"}
    assert "https://press.example.org/topics/research/feed.atom" in withdrawn
    await parts.close()

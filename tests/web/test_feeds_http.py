"""Feeds over HTTP: content types, order, topics, size limit and enclosures, from files scanned in."""

from __future__ import annotations

import json

import httpx
import pytest

from service.runtime import Components
from tests.conftest import Inbox
from tests.web.conftest import StartService
from tests.web.support import (
    BASE_URL,
    BY_TOPIC,
    FEED_TYPES,
    KINDS,
    feed_ids,
    parse_xml_feed,
    scan,
    write_dated,
)

PDF = b"%PDF-1.4\n% fact sheet\n" + bytes(range(256))


@pytest.mark.parametrize("kind", KINDS)
async def test_feed_has_its_registered_content_type_with_charset(
    client: httpx.AsyncClient, sample: list[str], kind: str
) -> None:
    response = await client.get(f"/feed.{kind}")
    assert response.status_code == 200
    assert response.headers["content-type"] == f"{FEED_TYPES[kind]}; charset=utf-8"


@pytest.mark.parametrize("kind", KINDS)
async def test_feed_carries_scanned_releases_newest_first(
    client: httpx.AsyncClient, sample: list[str], kind: str
) -> None:
    response = await client.get(f"/feed.{kind}")
    assert feed_ids(kind, response.content) == sample


@pytest.mark.parametrize("kind", ["rss", "atom"])
async def test_xml_feed_entries_have_titles_and_permalinks(
    client: httpx.AsyncClient, sample: list[str], kind: str
) -> None:
    parsed = parse_xml_feed((await client.get(f"/feed.{kind}")).content)
    assert parsed.feed.title == "Press releases"
    assert [e.title for e in parsed.entries] == [
        "Bravo wins a prize",
        "Alpha opens a lab",
        "Charlie publishes a study",
    ]


@pytest.mark.parametrize("kind", KINDS)
async def test_empty_site_serves_a_valid_empty_feed(client: httpx.AsyncClient, kind: str) -> None:
    response = await client.get(f"/feed.{kind}")
    assert response.status_code == 200
    assert feed_ids(kind, response.content) == []


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("topic", sorted(BY_TOPIC))
async def test_topic_feed_carries_only_that_topic(
    client: httpx.AsyncClient, sample: list[str], kind: str, topic: str
) -> None:
    response = await client.get(f"/topics/{topic}/feed.{kind}")
    assert response.status_code == 200
    assert response.headers["content-type"] == f"{FEED_TYPES[kind]}; charset=utf-8"
    assert feed_ids(kind, response.content) == BY_TOPIC[topic]


@pytest.mark.parametrize("kind", KINDS)
async def test_topic_feed_names_its_topic(client: httpx.AsyncClient, sample: list[str], kind: str) -> None:
    body = (await client.get(f"/topics/research/feed.{kind}")).content
    title = json.loads(body)["title"] if kind == "json" else parse_xml_feed(body).feed.title
    assert title == "Press releases: research"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("topic", ["nosuchtopic", "Research", "re search", "-research"])
async def test_unknown_or_invalid_topic_feed_is_404(
    client: httpx.AsyncClient, sample: list[str], kind: str, topic: str
) -> None:
    response = await client.get(f"/topics/{topic}/feed.{kind}")
    assert response.status_code == 404
    assert response.headers["content-type"] == "text/html; charset=utf-8"


@pytest.mark.parametrize("path", ["/feed.xml", "/feed.rss2", "/feed.", "/feed", "/topics/research/feed.xml"])
async def test_unserved_feed_extensions_are_404(
    client: httpx.AsyncClient, sample: list[str], path: str
) -> None:
    assert (await client.get(path)).status_code == 404


@pytest.mark.parametrize("kind", KINDS)
async def test_feed_size_limits_feeds_to_the_newest_releases(
    start_service: StartService, inbox: Inbox, kind: str
) -> None:
    service = await start_service(feed_size=2)
    newest_first = write_dated(inbox, 5)
    await scan(service.parts)
    site_feed = await service.http.get(f"/feed.{kind}")
    topic_feed = await service.http.get(f"/topics/series/feed.{kind}")
    assert feed_ids(kind, site_feed.content) == newest_first[:2]
    assert feed_ids(kind, topic_feed.content) == newest_first[:2]


# --- enclosures ----------------------------------------------------------------------------------


@pytest.fixture
async def with_attachment(inbox: Inbox, parts: Components) -> str:
    """A release with a PDF attachment whose name needs percent-encoding; returns its URL."""
    inbox.write("fact sheet.pdf", PDF)
    inbox.release("factsheet.md", title="Facts", date="2026-11-21", attachments=["fact sheet.pdf"])
    report = await scan(parts)
    assert report.created == ("factsheet",), report.problems
    return f"{BASE_URL}/announcements/factsheet/attachments/fact%20sheet.pdf"


async def test_atom_entry_has_an_enclosure_link_with_url_length_and_type(
    client: httpx.AsyncClient, with_attachment: str
) -> None:
    entry = parse_xml_feed((await client.get("/feed.atom")).content).entries[0]
    assert [(e.href, e.length, e.type) for e in entry.enclosures] == [
        (with_attachment, str(len(PDF)), "application/pdf")
    ]


async def test_rss_item_has_an_enclosure(client: httpx.AsyncClient, with_attachment: str) -> None:
    entry = parse_xml_feed((await client.get("/feed.rss")).content).entries[0]
    assert [(e.href, e.length, e.type) for e in entry.enclosures] == [
        (with_attachment, str(len(PDF)), "application/pdf")
    ]


async def test_json_feed_item_lists_the_attachment(client: httpx.AsyncClient, with_attachment: str) -> None:
    item = json.loads((await client.get("/feed.json")).content)["items"][0]
    assert item["attachments"] == [
        {"url": with_attachment, "mime_type": "application/pdf", "size_in_bytes": len(PDF)}
    ]


async def test_enclosure_url_from_the_feed_serves_the_file(
    client: httpx.AsyncClient, with_attachment: str
) -> None:
    entry = parse_xml_feed((await client.get("/feed.atom")).content).entries[0]
    url = entry.enclosures[0].href
    response = await client.get(url.removeprefix(BASE_URL))
    assert response.status_code == 200
    assert response.content == PDF
    assert response.headers["content-type"] == "application/pdf"

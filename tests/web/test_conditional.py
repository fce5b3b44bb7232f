"""Conditional GET (ETag / Last-Modified / 304), HEAD, deterministic bodies and gzip, over HTTP."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from email.utils import format_datetime, parsedate_to_datetime

import httpx
import pytest

from service.runtime import Components
from tests.conftest import FakeClock, Inbox
from tests.web.conftest import Service, StartService
from tests.web.support import metric, scan

FEEDS = ["/feed.rss", "/feed.atom", "/feed.json", "/topics/research/feed.atom"]
PAGES = ["/", "/topics/research/", "/announcements/bravo"]
PATHS = FEEDS + PAGES
IDENTITY = {"Accept-Encoding": "identity"}


async def fetch(client: httpx.AsyncClient, path: str, **headers: str) -> httpx.Response:
    """GET without compression, so bodies and lengths are the bytes the app rendered."""
    return await client.get(path, headers={**IDENTITY, **headers})


def http_date_shift(value: str, **delta: float) -> str:
    return format_datetime(parsedate_to_datetime(value) + timedelta(**delta), usegmt=True)


def assert_not_modified(response: httpx.Response, etag: str) -> None:
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag
    assert "content-length" not in response.headers or response.headers["content-length"] == "0"


# --- validators ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
async def test_response_carries_validators(client: httpx.AsyncClient, sample: list[str], path: str) -> None:
    response = await fetch(client, path)
    assert response.status_code == 200
    etag = response.headers["etag"]
    assert re.fullmatch(r'W/"[0-9a-f]{32}"', etag)
    assert parsedate_to_datetime(response.headers["last-modified"]).tzinfo is not None
    assert response.headers["cache-control"] == "public, max-age=60"


async def test_feed_last_modified_is_when_the_site_last_changed(
    client: httpx.AsyncClient, parts: Components, inbox: Inbox, clock: FakeClock, sample: list[str]
) -> None:
    assert parsedate_to_datetime((await fetch(client, "/feed.atom")).headers["last-modified"]) == clock.now()
    clock.advance(hours=3)
    inbox.release("delta.md", title="Delta", date="2026-11-23")
    await scan(parts)
    assert parsedate_to_datetime((await fetch(client, "/feed.atom")).headers["last-modified"]) == clock.now()


# --- If-None-Match -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
async def test_matching_etag_is_304_without_body(
    client: httpx.AsyncClient, sample: list[str], path: str
) -> None:
    etag = (await fetch(client, path)).headers["etag"]
    assert_not_modified(await fetch(client, path, **{"If-None-Match": etag}), etag)


@pytest.mark.parametrize(
    "header",
    [
        '"other", {etag}, W/"another"',
        '"other",{etag}',
        "*",
        "{strong}",
        'W/"other", {strong}',
    ],
    ids=["list", "list-no-space", "star", "without-W/", "list-without-W/"],
)
async def test_if_none_match_forms_that_match(
    client: httpx.AsyncClient, sample: list[str], header: str
) -> None:
    etag = (await fetch(client, "/feed.atom")).headers["etag"]
    value = header.format(etag=etag, strong=etag.removeprefix("W/"))
    assert_not_modified(await fetch(client, "/feed.atom", **{"If-None-Match": value}), etag)


@pytest.mark.parametrize("header", ['W/"0000"', '"0000"', '""', "W/", "garbage"])
async def test_stale_etag_gets_the_full_response(
    client: httpx.AsyncClient, sample: list[str], header: str
) -> None:
    full = await fetch(client, "/feed.atom")
    response = await fetch(client, "/feed.atom", **{"If-None-Match": header})
    assert response.status_code == 200
    assert response.content == full.content


async def test_etag_of_one_resource_does_not_validate_another(
    client: httpx.AsyncClient, sample: list[str]
) -> None:
    atom_etag = (await fetch(client, "/feed.atom")).headers["etag"]
    assert (await fetch(client, "/feed.rss", **{"If-None-Match": atom_etag})).status_code == 200


@pytest.mark.parametrize("path", [*FEEDS, "/", "/topics/research/"])
async def test_scanning_a_new_release_changes_the_etag(
    client: httpx.AsyncClient, parts: Components, inbox: Inbox, sample: list[str], path: str
) -> None:
    old = await fetch(client, path)
    inbox.release("delta.md", title="Delta", date="2026-11-23", topics=["research"])
    await scan(parts)
    new = await fetch(client, path, **{"If-None-Match": old.headers["etag"]})
    assert new.status_code == 200
    assert new.headers["etag"] != old.headers["etag"]
    assert b"Delta" in new.content


async def test_editing_a_release_changes_its_permalinks_etag(
    client: httpx.AsyncClient, parts: Components, inbox: Inbox, sample: list[str]
) -> None:
    old = await fetch(client, "/announcements/bravo")
    inbox.release("bravo.md", title="Bravo wins two prizes", date="2026-11-20", topics=["research"])
    await scan(parts)
    new = await fetch(client, "/announcements/bravo", **{"If-None-Match": old.headers["etag"]})
    assert new.status_code == 200
    assert new.headers["etag"] != old.headers["etag"]
    assert b"Bravo wins two prizes" in new.content


async def test_unrelated_change_keeps_a_permalinks_etag(
    client: httpx.AsyncClient, parts: Components, inbox: Inbox, sample: list[str]
) -> None:
    etag = (await fetch(client, "/announcements/bravo")).headers["etag"]
    inbox.release("delta.md", title="Delta", date="2026-11-23")
    await scan(parts)
    assert_not_modified(await fetch(client, "/announcements/bravo", **{"If-None-Match": etag}), etag)


# --- If-Modified-Since ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
async def test_if_modified_since_last_modified_is_304(
    client: httpx.AsyncClient, sample: list[str], path: str
) -> None:
    full = await fetch(client, path)
    since = full.headers["last-modified"]
    assert_not_modified(await fetch(client, path, **{"If-Modified-Since": since}), full.headers["etag"])


@pytest.mark.parametrize("path", PATHS)
async def test_if_modified_since_earlier_is_200(
    client: httpx.AsyncClient, sample: list[str], path: str
) -> None:
    full = await fetch(client, path)
    since = http_date_shift(full.headers["last-modified"], seconds=-1)
    response = await fetch(client, path, **{"If-Modified-Since": since})
    assert response.status_code == 200
    assert response.content == full.content


async def test_if_modified_since_later_is_304(client: httpx.AsyncClient, sample: list[str]) -> None:
    full = await fetch(client, "/feed.json")
    since = http_date_shift(full.headers["last-modified"], days=1)
    assert (await fetch(client, "/feed.json", **{"If-Modified-Since": since})).status_code == 304


@pytest.mark.parametrize("header", ["yesterday", "", "Tue, 99 Nov 2026 12:00:00 GMT", "2026-11-24T12:00:00"])
async def test_unparseable_if_modified_since_is_ignored(
    client: httpx.AsyncClient, sample: list[str], header: str
) -> None:
    assert (await fetch(client, "/feed.atom", **{"If-Modified-Since": header})).status_code == 200


async def test_if_none_match_wins_over_if_modified_since(
    client: httpx.AsyncClient, sample: list[str]
) -> None:
    full = await fetch(client, "/feed.atom")
    response = await fetch(
        client,
        "/feed.atom",
        **{"If-None-Match": 'W/"stale"', "If-Modified-Since": full.headers["last-modified"]},
    )
    assert response.status_code == 200


async def test_if_modified_since_before_a_new_scan_is_200(
    client: httpx.AsyncClient, parts: Components, inbox: Inbox, clock: FakeClock, sample: list[str]
) -> None:
    since = (await fetch(client, "/")).headers["last-modified"]
    clock.advance(minutes=5)
    inbox.release("delta.md", title="Delta", date="2026-11-23")
    await scan(parts)
    assert (await fetch(client, "/", **{"If-Modified-Since": since})).status_code == 200


# A release dated ahead of the moment it is published (no embargo): common when the date carries a time.
FUTURE_DATED_REASON = (
    "service/views.py:118 takes a permalink's Last-Modified from Release.updated, which for version 1 "
    "is the release's own date (service/store/releases.py:149), so a release dated ahead of publication "
    "gets a Last-Modified in the future"
)


@pytest.fixture
async def future_dated(client: httpx.AsyncClient, parts: Components, inbox: Inbox) -> httpx.Response:
    inbox.release("ahead.md", title="Ahead", date="2026-11-30")  # the fake clock says 2026-11-24
    await scan(parts)
    return await fetch(client, "/announcements/ahead")


async def test_permalink_last_modified_is_never_in_the_future(
    future_dated: httpx.Response, clock: FakeClock
) -> None:
    assert parsedate_to_datetime(future_dated.headers["last-modified"]) <= clock.now()


async def test_edit_of_a_future_dated_release_is_not_hidden_by_if_modified_since(
    client: httpx.AsyncClient, parts: Components, inbox: Inbox, clock: FakeClock, future_dated: httpx.Response
) -> None:
    clock.advance(hours=1)
    inbox.release("ahead.md", title="Ahead, corrected", date="2026-11-30")
    await scan(parts)
    since = future_dated.headers["last-modified"]
    response = await fetch(client, "/announcements/ahead", **{"If-Modified-Since": since})
    assert response.status_code == 200
    assert b"Ahead, corrected" in response.content


async def test_edit_of_a_release_is_seen_by_if_modified_since(
    client: httpx.AsyncClient, parts: Components, inbox: Inbox, clock: FakeClock, sample: list[str]
) -> None:
    since = (await fetch(client, "/announcements/bravo")).headers["last-modified"]
    clock.advance(hours=1)
    inbox.release("bravo.md", title="Bravo, corrected", date="2026-11-20")
    await scan(parts)
    response = await fetch(client, "/announcements/bravo", **{"If-Modified-Since": since})
    assert response.status_code == 200
    assert b"Bravo, corrected" in response.content


# --- deterministic bodies ------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
async def test_unchanged_data_gives_byte_identical_bodies(
    client: httpx.AsyncClient, sample: list[str], path: str
) -> None:
    first, second = await fetch(client, path), await fetch(client, path)
    assert first.content == second.content
    assert first.headers["etag"] == second.headers["etag"]
    assert first.headers["last-modified"] == second.headers["last-modified"]


@pytest.mark.parametrize("path", PATHS)
async def test_a_second_process_renders_the_same_bytes(
    client: httpx.AsyncClient, sample: list[str], start_service: StartService, path: str
) -> None:
    # A fresh service has a cold render cache: equal bytes mean rendering is deterministic, not cached.
    other = await start_service()
    mine, theirs = await fetch(client, path), await fetch(other.http, path)
    assert theirs.content == mine.content
    assert theirs.headers["etag"] == mine.headers["etag"]
    assert theirs.headers["last-modified"] == mine.headers["last-modified"]


async def test_rescan_without_changes_keeps_the_etag(
    client: httpx.AsyncClient, parts: Components, clock: FakeClock, sample: list[str]
) -> None:
    before = await fetch(client, "/feed.atom")
    clock.advance(hours=1)
    await scan(parts)
    after = await fetch(client, "/feed.atom")
    assert after.headers["etag"] == before.headers["etag"]
    assert after.headers["last-modified"] == before.headers["last-modified"]


# --- HEAD ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
async def test_head_returns_the_get_headers_without_a_body(
    client: httpx.AsyncClient, sample: list[str], path: str
) -> None:
    get = await fetch(client, path)
    head = await client.head(path, headers=IDENTITY)
    assert head.status_code == 200
    assert head.content == b""
    for name in ("etag", "last-modified", "content-type", "content-length"):
        assert head.headers[name] == get.headers[name]


async def test_head_is_conditional_too(client: httpx.AsyncClient, sample: list[str]) -> None:
    etag = (await fetch(client, "/feed.rss")).headers["etag"]
    assert_not_modified(await client.head("/feed.rss", headers={**IDENTITY, "If-None-Match": etag}), etag)


async def test_head_of_a_missing_page_is_404(client: httpx.AsyncClient, sample: list[str]) -> None:
    response = await client.head("/announcements/nosuch")
    assert response.status_code == 404
    assert response.content == b""


# --- gzip ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
async def test_gzip_encoded_when_accepted(client: httpx.AsyncClient, sample: list[str], path: str) -> None:
    plain = await fetch(client, path)
    gzipped = await client.get(path, headers={"Accept-Encoding": "gzip"})
    assert gzipped.headers["content-encoding"] == "gzip"
    assert int(gzipped.headers["content-length"]) < len(plain.content)
    assert gzipped.content == plain.content  # httpx decodes
    assert "accept-encoding" in gzipped.headers["vary"].lower()
    assert gzipped.headers["etag"] == plain.headers["etag"]  # weak: same entity, either encoding


async def test_not_gzip_encoded_when_not_accepted(client: httpx.AsyncClient, sample: list[str]) -> None:
    plain = await fetch(client, "/feed.atom")
    assert "content-encoding" not in plain.headers
    assert int(plain.headers["content-length"]) == len(plain.content)
    assert "accept-encoding" in plain.headers["vary"].lower()


async def test_gzip_request_with_matching_etag_is_304(client: httpx.AsyncClient, sample: list[str]) -> None:
    etag = (await fetch(client, "/feed.atom")).headers["etag"]
    response = await client.get("/feed.atom", headers={"Accept-Encoding": "gzip", "If-None-Match": etag})
    assert_not_modified(response, etag)


async def test_not_modified_to_a_gzip_client_keeps_vary(client: httpx.AsyncClient, sample: list[str]) -> None:
    etag = (await client.get("/feed.atom", headers={"Accept-Encoding": "gzip"})).headers["etag"]
    response = await client.get("/feed.atom", headers={"Accept-Encoding": "gzip", "If-None-Match": etag})
    assert response.status_code == 304
    assert "accept-encoding" in response.headers["vary"].lower()


# --- 304s are counted ----------------------------------------------------------------------------


async def test_not_modified_responses_are_counted_by_kind(
    client: httpx.AsyncClient, sample: list[str]
) -> None:
    def count(text: str, kind: str) -> float:
        return metric(text, "announce_not_modified_responses_total", default=0.0, kind=kind)

    before = (await client.get("/metrics")).text
    feed_etag = (await fetch(client, "/feed.atom")).headers["etag"]
    page_etag = (await fetch(client, "/")).headers["etag"]
    await fetch(client, "/feed.atom", **{"If-None-Match": feed_etag})
    await fetch(client, "/feed.rss", **{"If-None-Match": feed_etag})  # not a match: 200, not counted
    await fetch(client, "/", **{"If-None-Match": page_etag})
    await fetch(client, "/", **{"If-None-Match": page_etag})
    after = (await client.get("/metrics")).text
    assert count(after, "feed") - count(before, "feed") == 1
    assert count(after, "page") - count(before, "page") == 2


async def test_gzip_refused_with_q_zero_is_not_used(client: httpx.AsyncClient, sample: list[str]) -> None:
    response = await client.get("/feed.atom", headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "content-encoding" not in response.headers


# --- the site revision, cached for view_cache_seconds ----------------------------------------


async def two_nodes(start_service: StartService, cache_seconds: float) -> tuple[Service, Service]:
    """Two services on one database and folder, as two nodes are."""
    return (
        await start_service(view_cache_seconds=cache_seconds),
        await start_service(view_cache_seconds=cache_seconds),
    )


async def test_a_nodes_own_change_shows_at_once(start_service: StartService, inbox: Inbox) -> None:
    node, _ = await two_nodes(start_service, cache_seconds=3600)
    before = (await fetch(node.http, "/feed.atom")).headers["etag"]
    inbox.release("new.md", title="Fresh news", date="2026-11-21")
    await scan(node.parts)
    after = await fetch(node.http, "/feed.atom")
    assert after.headers["etag"] != before
    assert "Fresh news" in after.text


async def test_another_nodes_change_is_cached_for_view_cache_seconds(
    start_service: StartService, inbox: Inbox
) -> None:
    node, other = await two_nodes(start_service, cache_seconds=3600)
    before = (await fetch(node.http, "/feed.atom")).headers["etag"]
    inbox.release("new.md", title="Fresh news", date="2026-11-21")
    await scan(other.parts)
    assert "Fresh news" in (await fetch(other.http, "/feed.atom")).text
    assert (await fetch(node.http, "/feed.atom")).headers["etag"] == before  # not asked again yet


async def test_another_nodes_change_shows_once_view_cache_seconds_passed(
    start_service: StartService, inbox: Inbox
) -> None:
    node, other = await two_nodes(start_service, cache_seconds=0.2)
    await fetch(node.http, "/feed.atom")
    inbox.release("new.md", title="Fresh news", date="2026-11-21")
    await scan(other.parts)
    await asyncio.sleep(0.3)  # view_cache_seconds is on the monotonic clock, not the fake one
    assert "Fresh news" in (await fetch(node.http, "/feed.atom")).text

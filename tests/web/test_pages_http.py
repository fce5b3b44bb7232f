"""HTML archive and permalink pages over HTTP, from files scanned into the real database."""

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
    HTML,
    production_client,
    read_html,
    scan,
    write_dated,
)


def archive_ids(text: str) -> list[str]:
    """Release ids an archive page links to, in page order."""
    return [href.rsplit("/", 1)[1] for href in read_html(text).hrefs("/announcements/")]


# --- archive -------------------------------------------------------------------------------------


async def test_archive_lists_releases_newest_first_with_permalinks(
    client: httpx.AsyncClient, sample: list[str]
) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == HTML
    assert read_html(response.text).hrefs("/announcements/") == [f"/announcements/{i}" for i in sample]


async def test_empty_archive_is_a_page_not_an_error(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert "No announcements have been published yet." in response.text


@pytest.mark.parametrize("topic", sorted(BY_TOPIC))
async def test_topic_archive_lists_only_that_topic(
    client: httpx.AsyncClient, sample: list[str], topic: str
) -> None:
    response = await client.get(f"/topics/{topic}/")
    assert response.status_code == 200
    assert response.headers["content-type"] == HTML
    assert archive_ids(response.text) == BY_TOPIC[topic]
    assert read_html(response.text).text["h1"] == f"Topic: {topic}"


@pytest.mark.parametrize("path", ["/topics/nosuchtopic/", "/topics/Research/", "/topics/-research/"])
async def test_unknown_topic_archive_is_404(client: httpx.AsyncClient, sample: list[str], path: str) -> None:
    assert (await client.get(path)).status_code == 404


async def test_topic_archive_without_trailing_slash_redirects_to_it(
    client: httpx.AsyncClient, sample: list[str]
) -> None:
    response = await client.get("/topics/research", headers={"Host": "127.0.0.1:8000"})
    assert response.status_code == 301
    assert response.headers["location"] == "/topics/research/"  # one URL, whatever the Host header


@pytest.fixture
async def paged(start_service: StartService, inbox: Inbox) -> tuple[httpx.AsyncClient, list[str]]:
    """A service with two releases per page and five releases (three pages)."""
    service = await start_service(page_size=2)
    newest_first = write_dated(inbox, 5)
    await scan(service.parts)
    return service.http, newest_first


async def test_archive_pages_split_releases_newest_first(paged: tuple[httpx.AsyncClient, list[str]]) -> None:
    http, newest_first = paged
    pages = [await http.get(path) for path in ("/", "/page/2", "/page/3")]
    assert [r.status_code for r in pages] == [200, 200, 200]
    assert [archive_ids(r.text) for r in pages] == [newest_first[0:2], newest_first[2:4], newest_first[4:]]


async def test_archive_pages_link_to_their_neighbours(paged: tuple[httpx.AsyncClient, list[str]]) -> None:
    http, _ = paged
    first, middle, last = [read_html((await http.get(p)).text) for p in ("/", "/page/2", "/page/3")]
    assert [a["href"] for a in first.attrs("a") if a.get("rel")] == ["/page/2"]
    assert [a["href"] for a in middle.attrs("a") if a.get("rel")] == ["/", "/page/3"]
    assert [a["href"] for a in last.attrs("a") if a.get("rel")] == ["/page/2"]


async def test_page_one_redirects_permanently_to_the_archive_root(
    paged: tuple[httpx.AsyncClient, list[str]],
) -> None:
    http, _ = paged
    response = await http.get("/page/1")
    assert response.status_code == 301
    assert response.headers["location"] == "/"


async def test_topic_page_one_redirects_to_the_topic_archive(
    paged: tuple[httpx.AsyncClient, list[str]],
) -> None:
    http, newest_first = paged
    response = await http.get("/topics/series/page/1")
    assert response.status_code == 301
    assert response.headers["location"].endswith("/topics/series/")
    assert archive_ids((await http.get("/topics/series/page/2")).text) == newest_first[2:4]


async def test_topic_page_one_redirect_does_not_depend_on_the_host_header(
    paged: tuple[httpx.AsyncClient, list[str]],
) -> None:
    http, _ = paged
    response = await http.get("/topics/series/page/1", headers={"Host": "127.0.0.1:8000"})
    assert response.status_code == 301
    assert response.headers["location"] == "/topics/series/"


@pytest.mark.parametrize(
    "path",
    ["/page/4", "/page/99", "/page/4294967296", "/page/0", "/page/-1", "/page/two", "/topics/series/page/4"],
)
async def test_archive_page_past_the_end_is_404(
    paged: tuple[httpx.AsyncClient, list[str]], path: str
) -> None:
    http, _ = paged
    response = await http.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == HTML


HUGE_PAGES = [
    "/page/99999999999999999999",
    "/page/9223372036854775807",
    "/topics/series/page/99999999999999999999",
]


@pytest.mark.parametrize("path", HUGE_PAGES)
async def test_absurd_archive_page_number_is_404_not_a_server_error(
    parts: Components, inbox: Inbox, path: str
) -> None:
    write_dated(inbox, 3)
    await scan(parts)
    async with production_client(parts) as http:
        response = await http.get(path)
    assert response.status_code == 404


# --- permalink -----------------------------------------------------------------------------------


async def test_permalink_shows_the_release(client: httpx.AsyncClient, sample: list[str]) -> None:
    response = await client.get("/announcements/bravo")
    assert response.status_code == 200
    assert response.headers["content-type"] == HTML
    page = read_html(response.text)
    assert page.text["h1"] == "Bravo wins a prize"
    assert page.text["title"] == "Bravo wins a prize · Press releases"
    assert "Body of Bravo wins a prize." in page.text["article"]


async def test_permalink_advertises_every_feed_for_autodiscovery(
    client: httpx.AsyncClient, sample: list[str]
) -> None:
    page = read_html((await client.get("/announcements/bravo")).text)
    alternates = {
        (link["type"], link["href"]) for link in page.attrs("link") if link.get("rel") == "alternate"
    }
    assert alternates == {(media, f"{BASE_URL}/feed.{kind}") for kind, media in FEED_TYPES.items()}
    canonical = [link["href"] for link in page.attrs("link") if link.get("rel") == "canonical"]
    assert canonical == [f"{BASE_URL}/announcements/bravo"]


async def test_permalink_describes_itself_in_json_ld(client: httpx.AsyncClient, sample: list[str]) -> None:
    page = read_html((await client.get("/announcements/bravo")).text)
    [(attrs, text)] = page.scripts
    assert attrs["type"] == "application/ld+json"
    data = json.loads(text)
    assert data["@type"] == "NewsArticle"
    assert data["headline"] == "Bravo wins a prize"
    assert data["url"] == f"{BASE_URL}/announcements/bravo"
    assert data["datePublished"] == "2026-11-20T00:00:00Z"
    assert data["keywords"] == ["research", "awards"]


@pytest.mark.parametrize("release_id", ["nosuch", "Bravo", "bravo-", "bravo.md", "a" * 200])
async def test_unknown_permalink_is_a_404_html_page(
    client: httpx.AsyncClient, sample: list[str], release_id: str
) -> None:
    response = await client.get(f"/announcements/{release_id}")
    assert response.status_code == 404
    assert response.headers["content-type"] == HTML
    page = read_html(response.text)
    assert page.text["h1"] == "Page not found"
    assert {"name": "robots", "content": "noindex"} in page.attrs("meta")


async def test_unrouted_path_gets_the_same_404_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/no/such/page")
    assert response.status_code == 404
    assert read_html(response.text).text["h1"] == "Page not found"


@pytest.mark.parametrize("path", ["/announcements/bravo", "/feed.atom", "/", "/healthz"])
async def test_post_is_refused_without_the_content(
    client: httpx.AsyncClient, sample: list[str], path: str
) -> None:
    response = await client.post(path, content=b"x")
    assert response.status_code == 405
    assert b"Bravo" not in response.content


@pytest.mark.parametrize("path", ["/announcements/bravo", "/feed.atom"])
async def test_method_not_allowed_says_which_methods_are(
    client: httpx.AsyncClient, sample: list[str], path: str
) -> None:
    response = await client.post(path)
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["allow"].split(",")} == {"GET", "HEAD"}


# --- OpenAPI -------------------------------------------------------------------------------------


# GET+HEAD on one FastAPI route gives both operations the same operationId; FastAPI warns about it.
async def test_openapi_document_lists_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    paths = response.json()["paths"]
    assert "get" in paths["/healthz"]
    assert "get" in paths["/metrics"]
    assert "/announcements/{release_id}" not in paths  # public pages are not an API


async def test_openapi_operation_ids_are_unique(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    ids = [op["operationId"] for methods in paths.values() for op in methods.values()]
    assert len(ids) == len(set(ids)), ids

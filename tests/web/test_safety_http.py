"""Attachments, hostile paths and hostile release content, through the real app."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest

from service.runtime import Components, make_app
from tests.conftest import Inbox
from tests.web.support import BASE_URL, HTML, active_content, assert_absent, raw_request, read_html, scan

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4
OUTSIDE_SECRET = "OUTSIDE-SECRET-7f3a9c"
INSIDE_SECRET = "INSIDE-SECRET-52be0d"
SECRETS = (OUTSIDE_SECRET, INSIDE_SECRET)
ATOM = "{http://www.w3.org/2005/Atom}"


@pytest.fixture
async def attached(inbox: Inbox, parts: Components, tmp_path: Path) -> str:
    """Release `factsheet` with one attachment, a secret outside the inbox and an unlisted file inside."""
    (tmp_path / "config.yaml").write_text(f"password: {OUTSIDE_SECRET}\n")
    inbox.write("notes.txt", f"{INSIDE_SECRET}\n")
    inbox.write("fact sheet.pdf", PDF)
    inbox.write("draft.pdf", f"{INSIDE_SECRET}\n".encode())
    inbox.release("factsheet.md", title="Facts", date="2026-11-21", attachments=["fact sheet.pdf"])
    report = await scan(parts)
    assert report.created == ("factsheet",), report.problems
    return "factsheet"


# --- attachments ---------------------------------------------------------------------------------


async def test_listed_attachment_is_served_with_its_type(client: httpx.AsyncClient, attached: str) -> None:
    url = f"/announcements/{attached}/attachments/fact%20sheet.pdf"
    response = await client.get(url, headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert response.content == PDF
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-length"] == str(len(PDF))
    assert "content-encoding" not in response.headers


async def test_permalink_links_to_the_attachment(client: httpx.AsyncClient, attached: str) -> None:
    page = read_html((await client.get(f"/announcements/{attached}")).text)
    assert f"/announcements/{attached}/attachments/fact%20sheet.pdf" in page.hrefs()


@pytest.mark.parametrize(
    "name", ["notes.txt", "draft.pdf", "factsheet.md", "fact%20sheet.PDF", "fact_sheet.pdf"]
)
async def test_file_the_release_does_not_list_is_404(
    client: httpx.AsyncClient, attached: str, name: str
) -> None:
    response = await client.get(f"/announcements/{attached}/attachments/{name}")
    assert response.status_code == 404
    assert_absent(response.content, SECRETS)
    assert b"title: Facts" not in response.content


async def test_attachment_of_another_release_is_404(
    client: httpx.AsyncClient, inbox: Inbox, parts: Components, attached: str
) -> None:
    inbox.release("other.md", title="Other", date="2026-11-22")
    await scan(parts)
    assert (await client.get("/announcements/other/attachments/fact%20sheet.pdf")).status_code == 404


async def test_attachment_of_a_withdrawn_release_is_404(
    client: httpx.AsyncClient, inbox: Inbox, parts: Components, attached: str
) -> None:
    inbox.remove("factsheet.md")
    await scan(parts)
    assert (await client.get(f"/announcements/{attached}/attachments/fact%20sheet.pdf")).status_code == 404


async def test_attachment_swapped_for_a_symlink_out_of_the_inbox_is_404(
    client: httpx.AsyncClient, inbox: Inbox, tmp_path: Path, attached: str
) -> None:
    (inbox.folder / "fact sheet.pdf").unlink()
    (inbox.folder / "fact sheet.pdf").symlink_to(tmp_path / "config.yaml")
    response = await client.get(f"/announcements/{attached}/attachments/fact%20sheet.pdf")
    assert response.status_code == 404
    assert_absent(response.content, SECRETS)


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("résumé.pdf", "application/pdf"), ("a#b?c.pdf", "application/pdf"), ("100%.txt", "text/plain")],
)
async def test_attachment_with_a_name_that_needs_encoding_is_reachable_from_the_feed(
    client: httpx.AsyncClient, inbox: Inbox, parts: Components, name: str, content_type: str
) -> None:
    inbox.write(name, PDF)
    inbox.release("odd.md", title="Odd names", date="2026-11-21", attachments=[name])
    assert (await scan(parts)).created == ("odd",)
    [item] = json.loads((await client.get("/feed.json")).content)["items"]
    url = item["attachments"][0]["url"].removeprefix(BASE_URL)
    response = await client.get(url)
    assert response.status_code == 200
    assert response.content == PDF
    assert response.headers["content-type"].split(";")[0] == content_type


@pytest.mark.parametrize("name", ["page.html", "image.svg"])
async def test_attachment_that_a_browser_could_run_is_served_as_a_download(
    client: httpx.AsyncClient, inbox: Inbox, parts: Components, name: str
) -> None:
    inbox.write(name, "<script>alert(document.cookie)</script>")
    inbox.release("active.md", title="Active", date="2026-11-21", attachments=[name])
    assert (await scan(parts)).created == ("active",)
    response = await client.get(f"/announcements/active/attachments/{name}")
    assert response.status_code == 200
    assert response.headers["content-disposition"].startswith("attachment;")


# --- hostile paths -------------------------------------------------------------------------------

HOSTILE_PATHS = [
    "/announcements/..%2f..%2fconfig.yaml",
    "/announcements/..%2fconfig.yaml",
    "/announcements/%2e%2e/%2e%2e/config.yaml",
    "/announcements/%2e%2e%2fnotes.txt",
    "/announcements/..%5cconfig.yaml",
    "/announcements/notes.txt",
    "/announcements/factsheet%00.md",
    "/topics/..%2f/feed.atom",
    "/topics/..%2f..%2f/feed.atom",
    "/topics/%2e%2e/feed.rss",
    "/topics/..%2f/",
    "/announcements/factsheet/attachments/..%2fconfig.yaml",
    "/announcements/factsheet/attachments/..%2f..%2fconfig.yaml",
    "/announcements/factsheet/attachments/..%2fsecret.md",
    "/announcements/factsheet/attachments/%2e%2e%2fnotes.txt",
    "/announcements/factsheet/attachments/..%5cnotes.txt",
    "/announcements/factsheet/attachments/%2fetc%2fpasswd",
    "/announcements/..%2ffactsheet/attachments/notes.txt",
]


@pytest.mark.parametrize("path", HOSTILE_PATHS)
async def test_hostile_path_is_a_plain_404(client: httpx.AsyncClient, attached: str, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == HTML
    assert_absent(response.content, SECRETS)


RAW_PATHS = [
    "/announcements/../config.yaml",
    "/announcements/../../config.yaml",
    "/announcements/factsheet/attachments/../notes.txt",
    "/announcements/factsheet/attachments/../../config.yaml",
    "/topics/../feed.atom",
    "/topics/../../config.yaml/feed.json",
]


@pytest.mark.parametrize("path", RAW_PATHS)
async def test_unnormalised_dot_segments_are_a_plain_404(parts: Components, attached: str, path: str) -> None:
    # httpx would resolve '..' before sending; a raw ASGI call delivers the path as a hostile client may.
    response = await raw_request(make_app(parts), path)
    assert response.status == 404
    assert_absent(response.body, SECRETS)


# --- hostile content -----------------------------------------------------------------------------

HOSTILE_TITLE = "<script>alert(1)</script>"
HOSTILE_BODY = """\
<img src=x onerror=alert(1)>

[link](javascript:alert(1))

<a href="javascript:alert(2)">raw link</a> <a href=" JaVaScRiPt:alert(3)">spaced</a>

<script>alert(4)</script>

<iframe src="https://evil.example/"></iframe><svg onload=alert(5)></svg>
"""


@pytest.fixture
async def hostile(inbox: Inbox, parts: Components) -> str:
    inbox.release("hostile.md", title=HOSTILE_TITLE, date="2026-11-22", topics=["xss"], body=HOSTILE_BODY)
    report = await scan(parts)
    assert report.created == ("hostile",), report.problems
    return "hostile"


def assert_no_markup_attack(raw: bytes) -> None:
    assert b"<script>alert" not in raw
    assert b"onerror" not in raw
    assert b"onload" not in raw


@pytest.mark.parametrize("path", ["/announcements/hostile", "/", "/topics/xss/"])
async def test_hostile_release_cannot_script_the_pages(
    client: httpx.AsyncClient, hostile: str, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert_no_markup_attack(response.content)
    page = read_html(response.text)
    assert active_content(page) == []
    assert not page.attrs("iframe")


async def test_hostile_title_is_shown_as_text(client: httpx.AsyncClient, hostile: str) -> None:
    page = read_html((await client.get("/announcements/hostile")).text)
    assert page.text["h1"] == HOSTILE_TITLE
    assert page.text["title"].startswith(HOSTILE_TITLE)
    [(_, json_ld)] = page.scripts
    assert "</script" not in json_ld.lower()
    assert json.loads(json_ld)["headline"] == HOSTILE_TITLE


def xml_feed_html(kind: str, raw: bytes) -> list[str]:
    """The HTML fragments a reader would render from an RSS or Atom feed's entries."""
    root = ET.fromstring(raw)
    if kind == "atom":
        fields = [f"{ATOM}summary", f"{ATOM}content", f"{ATOM}title"]
        entries = root.iter(f"{ATOM}entry")
    else:
        fields = ["description", "{http://purl.org/rss/1.0/modules/content/}encoded", "title"]
        entries = root.iter("item")
    return [el.text or "" for entry in entries for name in fields for el in entry.iter(name)]


@pytest.mark.parametrize("kind", ["rss", "atom"])
async def test_hostile_release_cannot_script_xml_feeds(
    client: httpx.AsyncClient, hostile: str, kind: str
) -> None:
    raw = (await client.get(f"/feed.{kind}")).content
    assert_no_markup_attack(raw)
    fragments = xml_feed_html(kind, raw)
    assert fragments
    for fragment in fragments:
        if fragment == HOSTILE_TITLE:
            continue  # a title element is text, escaped in the XML: readers do not render it as HTML
        assert active_content(read_html(fragment)) == [], fragment


async def test_hostile_release_cannot_script_the_json_feed(client: httpx.AsyncClient, hostile: str) -> None:
    raw = (await client.get("/feed.json")).content
    assert b"onerror" not in raw
    [item] = json.loads(raw)["items"]
    assert item["title"] == HOSTILE_TITLE  # JSON Feed titles are plain text, as in the file
    for field in ("content_html", "summary"):
        page = read_html(item[field])
        assert active_content(page) == [], item[field]
        assert not page.attrs("iframe")

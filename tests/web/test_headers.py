"""Security headers on every kind of response, through the real ASGI app."""

from __future__ import annotations

import httpx

from service.runtime import Components
from service.web.headers import FILE_POLICY, PAGE_POLICY
from tests.conftest import Inbox
from tests.web.support import scan

SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


async def test_pages_forbid_framing_scripts_and_referrers(
    client: httpx.AsyncClient, inbox: Inbox, parts: Components
) -> None:
    inbox.release("one.md", title="One", date="2026-11-20")
    await scan(parts)
    for path in ("/", "/announcements/one", "/subscribe", "/no-such-page"):
        response = await client.get(path)
        assert response.headers["content-type"].startswith("text/html"), path
        assert response.headers["content-security-policy"] == PAGE_POLICY, path
        assert "frame-ancestors 'none'" in PAGE_POLICY
        assert "script-src" not in PAGE_POLICY  # default-src 'none' covers scripts
        assert response.headers["x-frame-options"] == "DENY", path
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["referrer-policy"] == "same-origin", path


async def test_attachments_and_feeds_are_never_sniffed_or_run(
    client: httpx.AsyncClient, inbox: Inbox, parts: Components
) -> None:
    inbox.write("one.svg", SVG)  # named after the release: published with it
    inbox.release("one.md", title="One", date="2026-11-20")
    await scan(parts)
    attachment = await client.get("/announcements/one/attachments/one.svg")
    assert attachment.status_code == 200
    assert attachment.content == SVG
    assert attachment.headers["content-type"] == "image/svg+xml"
    assert attachment.headers["content-disposition"].startswith("attachment;")
    assert attachment.headers["content-security-policy"] == FILE_POLICY
    assert "sandbox" in FILE_POLICY.split("; ")
    assert attachment.headers["x-content-type-options"] == "nosniff"
    feed = await client.get("/feed.atom")
    assert (feed.headers["x-content-type-options"], feed.headers["content-security-policy"]) == (
        "nosniff",
        FILE_POLICY,
    )
    assert "x-frame-options" not in feed.headers


async def test_api_docs_keep_their_scripts(client: httpx.AsyncClient) -> None:
    docs = await client.get("/api/docs")
    assert docs.status_code == 200
    assert "content-security-policy" not in docs.headers

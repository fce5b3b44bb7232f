"""/healthz and /metrics after real scans."""

from __future__ import annotations

from datetime import timedelta

import httpx

from service.runtime import Components
from tests.conftest import START, Inbox
from tests.web.conftest import StartService
from tests.web.support import metric, scan

BROKEN = "---\ntitle: Broken\ndat: 2026-11-20\n---\n\nThe key on line 3 is misspelt.\n"


async def metrics_text(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return response.text


# --- /healthz ------------------------------------------------------------------------------------


async def test_healthz_is_ok_json_with_no_problems(client: httpx.AsyncClient, sample: list[str]) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"status": "ok", "database": "ok", "file_problems": []}


async def test_healthz_lists_a_broken_release_file(
    client: httpx.AsyncClient, parts: Components, inbox: Inbox, sample: list[str]
) -> None:
    inbox.write("broken.md", BROKEN)
    await scan(parts)
    [problem] = (await client.get("/healthz")).json()["file_problems"]
    assert problem["file"] == "broken.md"
    assert problem["line"] == 3
    assert problem["reason"] == "unknown key 'dat'"
    assert problem["hint"] == "did you mean 'date'?"


async def test_healthz_lists_a_file_in_a_subfolder_and_an_id_clash(
    client: httpx.AsyncClient, parts: Components, inbox: Inbox, sample: list[str]
) -> None:
    inbox.write("2026/no-front-matter.md", "Just text.\n")
    inbox.release("copy.md", title="Copy", date="2026-11-21", id="alpha")
    await scan(parts)
    problems = {p["file"]: p for p in (await client.get("/healthz")).json()["file_problems"]}
    assert set(problems) == {"2026/no-front-matter.md", "copy.md"}
    assert problems["2026/no-front-matter.md"]["reason"] == "missing front matter"
    assert problems["2026/no-front-matter.md"]["line"] == 1
    assert "already used by alpha.md" in problems["copy.md"]["reason"]


async def test_healthz_forgets_a_problem_once_the_file_is_fixed(
    client: httpx.AsyncClient, parts: Components, inbox: Inbox
) -> None:
    inbox.write("broken.md", BROKEN)
    await scan(parts)
    inbox.write("broken.md", BROKEN.replace("dat:", "date:"))
    await scan(parts)
    assert (await client.get("/healthz")).json()["file_problems"] == []
    assert (await client.get("/announcements/broken")).status_code == 200


async def test_healthz_answers_head(client: httpx.AsyncClient) -> None:
    response = await client.head("/healthz")
    assert response.status_code == 200
    assert response.content == b""


# --- /metrics ------------------------------------------------------------------------------------


async def test_metrics_is_prometheus_text(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE announce_releases gauge" in response.text


async def test_metrics_count_releases_by_state_after_a_scan(
    client: httpx.AsyncClient, parts: Components, inbox: Inbox, sample: list[str]
) -> None:
    inbox.release(
        "later.md", title="Later", date="2026-11-26", publish_at=(START + timedelta(days=2)).isoformat()
    )
    inbox.remove("charlie.md")
    inbox.write("broken.md", BROKEN)
    await scan(parts)
    text = await metrics_text(client)
    assert metric(text, "announce_releases", state="published") == 2
    assert metric(text, "announce_releases", state="scheduled") == 1
    assert metric(text, "announce_releases", state="withdrawn") == 1
    assert metric(text, "announce_file_problems") == 1


async def test_metrics_count_feed_requests_by_format(client: httpx.AsyncClient, sample: list[str]) -> None:
    def requests(text: str, kind: str) -> float:
        return metric(text, "announce_feed_requests_total", default=0.0, format=kind)

    before = await metrics_text(client)
    for path in ("/feed.atom", "/feed.atom", "/topics/research/feed.atom", "/feed.json"):
        assert (await client.get(path)).status_code == 200
    after = await metrics_text(client)
    assert requests(after, "atom") - requests(before, "atom") == 3
    assert requests(after, "json") - requests(before, "json") == 1
    assert requests(after, "rss") - requests(before, "rss") == 0


async def test_metrics_count_304_responses(client: httpx.AsyncClient, sample: list[str]) -> None:
    etag = (await client.get("/feed.atom")).headers["etag"]
    await client.get("/feed.atom", headers={"If-None-Match": etag})
    text = await metrics_text(client)
    assert metric(text, "announce_not_modified_responses_total", kind="feed") == 1


async def test_metrics_are_per_service_not_global(
    client: httpx.AsyncClient, sample: list[str], start_service: StartService
) -> None:
    await client.get("/feed.rss")
    other = await start_service()
    text = (await other.http.get("/metrics")).text
    assert metric(text, "announce_feed_requests_total", default=0.0, format="rss") == 0

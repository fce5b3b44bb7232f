"""A release's life as HTTP clients see it: embargo, publication, edit and withdrawal."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from service import jobs
from service.runtime import Components
from tests.conftest import START, FakeClock, Inbox
from tests.web.support import KINDS, feed_ids, parse_xml_feed, read_html, scan

EMBARGO = START + timedelta(days=1)  # 2026-11-25 12:00 UTC, the fake clock starts a day earlier
PDF = b"%PDF-1.4 embargoed\n"


async def visible_everywhere(client: httpx.AsyncClient, release_id: str) -> dict[str, bool]:
    """Where the release can be seen: permalink, archive, each site feed."""
    seen = {"permalink": (await client.get(f"/announcements/{release_id}")).status_code == 200}
    archive = read_html((await client.get("/")).text).hrefs("/announcements/")
    seen["archive"] = f"/announcements/{release_id}" in archive
    for kind in KINDS:
        seen[kind] = release_id in feed_ids(kind, (await client.get(f"/feed.{kind}")).content)
    return seen


NOWHERE = {"permalink": False, "archive": False, "rss": False, "atom": False, "json": False}
EVERYWHERE = dict.fromkeys(NOWHERE, True)


# --- embargo -------------------------------------------------------------------------------------


@pytest.fixture
async def embargoed(inbox: Inbox, parts: Components) -> str:
    """A published release and an embargoed one (with its own topic and an attachment)."""
    inbox.release("public.md", title="Public", date="2026-11-20")
    inbox.write("brief.pdf", PDF)
    inbox.release(
        "secret-deal.md",
        title="Secret deal",
        date="2026-11-25",
        topics=["deals"],
        publish_at=EMBARGO.isoformat(),
        attachments=["brief.pdf"],
    )
    report = await scan(parts)
    assert sorted(report.created) == ["public", "secret-deal"], report.problems
    return "secret-deal"


async def test_embargoed_release_is_invisible(client: httpx.AsyncClient, embargoed: str) -> None:
    assert await visible_everywhere(client, embargoed) == NOWHERE
    assert (await client.get(f"/announcements/{embargoed}")).status_code == 404


async def test_embargoed_release_topic_and_attachment_are_404(
    client: httpx.AsyncClient, embargoed: str
) -> None:
    assert (await client.get("/topics/deals/feed.atom")).status_code == 404
    assert (await client.get("/topics/deals/")).status_code == 404
    response = await client.get(f"/announcements/{embargoed}/attachments/brief.pdf")
    assert response.status_code == 404
    assert PDF not in response.content


async def test_embargoed_release_stays_hidden_until_its_moment(
    client: httpx.AsyncClient, parts: Components, clock: FakeClock, embargoed: str
) -> None:
    clock.set(EMBARGO - timedelta(seconds=1))
    assert await jobs.publish_due(parts.jobs) == []
    assert await visible_everywhere(client, embargoed) == NOWHERE


async def test_embargoed_release_appears_once_published(
    client: httpx.AsyncClient, parts: Components, clock: FakeClock, embargoed: str
) -> None:
    await client.get("/feed.atom")  # warm any cache with the embargoed state
    clock.set(EMBARGO)
    published = await jobs.publish_due(parts.jobs)
    assert [r.id for r in published] == [embargoed]
    assert await visible_everywhere(client, embargoed) == EVERYWHERE
    assert feed_ids("atom", (await client.get("/topics/deals/feed.atom")).content) == [embargoed]
    attachment = await client.get(f"/announcements/{embargoed}/attachments/brief.pdf")
    assert attachment.content == PDF


async def test_scan_after_the_embargo_publishes_too(
    client: httpx.AsyncClient, parts: Components, clock: FakeClock, embargoed: str
) -> None:
    clock.set(EMBARGO + timedelta(minutes=20))  # late, but within the grace (a longer wait holds it)
    assert (await scan(parts)).published == (embargoed,)
    assert (await client.get(f"/announcements/{embargoed}")).status_code == 200


async def test_embargoed_release_withdrawn_before_its_moment_never_appears(
    client: httpx.AsyncClient, parts: Components, inbox: Inbox, clock: FakeClock, embargoed: str
) -> None:
    inbox.remove("secret-deal.md")
    await scan(parts)
    clock.set(EMBARGO + timedelta(hours=1))
    assert await jobs.publish_due(parts.jobs) == []
    assert await visible_everywhere(client, embargoed) == NOWHERE


async def test_postponed_embargo_holds_past_the_original_moment(
    client: httpx.AsyncClient, parts: Components, inbox: Inbox, clock: FakeClock, embargoed: str
) -> None:
    later = EMBARGO + timedelta(days=1)
    text = (inbox.folder / "secret-deal.md").read_text()
    inbox.write("secret-deal.md", text.replace(EMBARGO.isoformat(), later.isoformat()))
    await scan(parts)
    clock.set(EMBARGO + timedelta(hours=1))
    assert await jobs.publish_due(parts.jobs) == []
    assert await visible_everywhere(client, embargoed) == NOWHERE
    clock.set(later)
    assert [r.id for r in await jobs.publish_due(parts.jobs)] == [embargoed]
    assert await visible_everywhere(client, embargoed) == EVERYWHERE


async def test_lifting_the_embargo_in_the_file_publishes_at_the_next_scan(
    client: httpx.AsyncClient, parts: Components, inbox: Inbox, embargoed: str
) -> None:
    text = (inbox.folder / "secret-deal.md").read_text()
    inbox.write("secret-deal.md", "".join(line for line in text.splitlines(True) if "publish_at" not in line))
    await scan(parts)
    assert await visible_everywhere(client, embargoed) == EVERYWHERE


# --- withdrawal ----------------------------------------------------------------------------------


async def test_deleted_file_withdraws_the_release(
    client: httpx.AsyncClient, parts: Components, inbox: Inbox, sample: list[str]
) -> None:
    assert await visible_everywhere(client, "alpha") == EVERYWHERE  # warm any cache
    inbox.remove("alpha.md")
    assert (await scan(parts)).withdrawn == ("alpha",)
    assert await visible_everywhere(client, "alpha") == NOWHERE
    assert feed_ids("atom", (await client.get("/topics/awards/feed.atom")).content) == ["bravo"]


async def test_withdrawn_release_comes_back_with_its_file(
    client: httpx.AsyncClient, parts: Components, inbox: Inbox, sample: list[str]
) -> None:
    text = (inbox.folder / "alpha.md").read_bytes()
    inbox.remove("alpha.md")
    await scan(parts)
    inbox.write("alpha.md", text)
    await scan(parts)
    assert await visible_everywhere(client, "alpha") == EVERYWHERE


async def test_withdrawing_a_topics_last_release_removes_the_topic(
    client: httpx.AsyncClient, parts: Components, inbox: Inbox, sample: list[str]
) -> None:
    inbox.remove("bravo.md")
    inbox.remove("charlie.md")
    await scan(parts)
    assert (await client.get("/topics/research/feed.rss")).status_code == 404
    assert (await client.get("/topics/research/")).status_code == 404


# --- edit ----------------------------------------------------------------------------------------


def atom_entry(body: bytes, release_id: str) -> dict[str, object]:
    [entry] = [e for e in parse_xml_feed(body).entries if e.link.endswith(f"/{release_id}")]
    return dict(entry)


async def test_edit_keeps_the_id_and_moves_updated_forward(
    client: httpx.AsyncClient, parts: Components, inbox: Inbox, clock: FakeClock, sample: list[str]
) -> None:
    before = atom_entry((await client.get("/feed.atom")).content, "alpha")
    clock.advance(days=2)
    inbox.release("alpha.md", title="Alpha opens a bigger lab", date="2026-11-10", topics=["awards"])
    assert (await scan(parts)).updated == ("alpha",)
    after = atom_entry((await client.get("/feed.atom")).content, "alpha")
    assert after["id"] == before["id"]
    assert after["title"] == "Alpha opens a bigger lab"
    assert after["updated_parsed"] > before["updated_parsed"]
    assert after["published_parsed"] == before["published_parsed"]
    assert datetime.fromisoformat(after["updated"]) == clock.now()  # type: ignore[arg-type]


async def test_edit_shows_in_json_feed_and_permalink(
    client: httpx.AsyncClient, parts: Components, inbox: Inbox, clock: FakeClock, sample: list[str]
) -> None:
    old_page = await client.get("/announcements/alpha")
    clock.advance(hours=5)
    inbox.release("alpha.md", title="Alpha, corrected", date="2026-11-10", body="Corrected body.")
    await scan(parts)
    [item] = [
        i
        for i in json.loads((await client.get("/feed.json")).content)["items"]
        if i["title"].startswith("Alpha")
    ]
    assert item["date_modified"] == clock.now().astimezone(UTC).isoformat()
    assert item["id"] == "tag:press.example.org,2026-11-10:alpha"
    page = await client.get("/announcements/alpha")
    assert read_html(page.text).text["h1"] == "Alpha, corrected"
    assert "Updated" in read_html(page.text).text["header"]
    assert page.headers["etag"] != old_page.headers["etag"]


async def test_renamed_file_keeps_the_same_release(
    client: httpx.AsyncClient, parts: Components, inbox: Inbox, sample: list[str]
) -> None:
    feed_before = (await client.get("/feed.atom")).content
    text = (inbox.folder / "alpha.md").read_text()
    inbox.remove("alpha.md")
    inbox.write("renamed.md", text.replace("title:", "id: alpha\ntitle:"))
    report = await scan(parts)
    assert report.withdrawn == ()
    assert (await client.get("/announcements/alpha")).status_code == 200
    assert feed_ids("atom", (await client.get("/feed.atom")).content) == feed_ids("atom", feed_before)


# --- drafts --------------------------------------------------------------------------------------


async def test_draft_is_never_served(client: httpx.AsyncClient, parts: Components, inbox: Inbox) -> None:
    inbox.release("wip.md", title="Work in progress", date="2026-11-20", draft=True)
    await scan(parts)
    assert await visible_everywhere(client, "wip") == NOWHERE


async def test_turning_a_release_back_into_a_draft_withdraws_it(
    client: httpx.AsyncClient, parts: Components, inbox: Inbox, sample: list[str]
) -> None:
    inbox.release("alpha.md", title="Alpha opens a lab", date="2026-11-10", draft=True)
    assert (await scan(parts)).withdrawn == ("alpha",)
    assert await visible_everywhere(client, "alpha") == NOWHERE

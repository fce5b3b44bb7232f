"""The release repository on SQLite and PostgreSQL: upsert, versions, publication state, queries."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from service.errors import DuplicateIdError
from service.models import Announcement, Attachment, ReleaseState
from service.runtime import Components
from service.store.releases import Change
from service.store.schema import metadata
from tests.conftest import START, FakeClock

DATE = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def announcement(release_id: str = "first", **changes: object) -> Announcement:
    base = Announcement(
        id=release_id,
        title=f"Title of {release_id}",
        date=DATE,
        body_html="<p>Body</p>",
        summary="Body",
        source=f"{release_id}.md",
        lang="en",
        topics=("research",),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


async def store(
    parts: Components, ann: Announcement, clock: FakeClock, live: set[str] | None = None
) -> Change:
    result = await parts.releases.upsert(
        ann, guid=f"tag:x,2026:{ann.id}", now=clock.now(), live_sources=live or {ann.source}
    )
    return result.change


async def test_migrations_produce_exactly_the_declared_schema(parts: Components) -> None:
    async with parts.database.engine.connect() as conn:
        diff = await conn.run_sync(lambda sync: compare_metadata(MigrationContext.configure(sync), metadata))
    assert diff == []


async def test_migrate_twice_is_harmless(parts: Components) -> None:
    await parts.database.migrate()
    assert (await parts.releases.site_version()).revision == 0


async def test_insert_then_unchanged_then_new_version(parts: Components, clock: FakeClock) -> None:
    assert await store(parts, announcement(), clock) is Change.CREATED
    assert await store(parts, announcement(), clock) is Change.UNCHANGED
    first = await parts.releases.get("first")
    assert first is not None
    assert (first.version, first.state, first.updated) == (1, ReleaseState.PUBLISHED, DATE)
    clock.advance(hours=1)
    assert await store(parts, announcement(title="Corrected title"), clock) is Change.UPDATED
    second = await parts.releases.get("first")
    assert second is not None
    assert (second.version, second.announcement.title) == (2, "Corrected title")
    assert second.updated == clock.now()  # an edit after publication moves `updated`
    assert second.guid == first.guid  # the feed id never changes


async def test_guid_is_fixed_at_first_insert(parts: Components, clock: FakeClock) -> None:
    await store(parts, announcement(), clock)
    await parts.releases.upsert(
        announcement(title="Edited"), guid="tag:other", now=clock.now(), live_sources={"first.md"}
    )
    release = await parts.releases.get("first")
    assert release is not None
    assert release.guid == "tag:x,2026:first"


async def test_same_id_in_two_live_files_is_a_duplicate(parts: Components, clock: FakeClock) -> None:
    await store(parts, announcement(), clock)
    other = announcement(source="other.md")
    with pytest.raises(DuplicateIdError, match=r"already used by first\.md"):
        await store(parts, other, clock, live={"first.md", "other.md"})


async def test_renamed_file_keeps_its_release(parts: Components, clock: FakeClock) -> None:
    await store(parts, announcement(), clock)
    assert await store(parts, announcement(source="renamed.md"), clock, live={"renamed.md"}) is Change.MOVED
    assert await parts.releases.sources() == {"first": "renamed.md"}


async def test_withdraw_hides_and_restore_shows_again(parts: Components, clock: FakeClock) -> None:
    await store(parts, announcement(), clock)
    assert await parts.releases.withdraw(["first"], clock.now()) == ["first"]
    assert await parts.releases.withdraw(["first"], clock.now()) == []  # idempotent
    assert await parts.releases.get("first") is None
    assert await parts.releases.latest(10) == []
    assert await store(parts, announcement(), clock) is Change.RESTORED
    restored = await parts.releases.get("first")
    assert restored is not None
    assert restored.version == 1


async def test_embargo_hides_until_publish_due(parts: Components, clock: FakeClock) -> None:
    embargo = START + timedelta(hours=2)
    await store(parts, announcement(publish_at=embargo), clock)
    assert await parts.releases.get("first") is None
    assert await parts.releases.embargoes() == [("first", embargo)]
    assert await parts.releases.publish_due(clock.now()) == []
    clock.set(embargo)
    published = await parts.releases.publish_due(clock.now())
    assert [r.id for r in published] == ["first"]
    assert published[0].published_at == embargo
    assert await parts.releases.publish_due(clock.now()) == []  # a second caller (or node) gets nothing
    assert await parts.releases.get("first") is not None
    assert await parts.releases.embargoes() == []


async def test_editing_an_embargoed_release_keeps_updated_at_its_date(
    parts: Components, clock: FakeClock
) -> None:
    await store(parts, announcement(publish_at=START + timedelta(days=1)), clock)
    clock.advance(hours=1)
    await store(
        parts, announcement(publish_at=START + timedelta(days=1), title="Fixed before release"), clock
    )
    clock.advance(days=1)
    [release] = await parts.releases.publish_due(clock.now())
    assert (release.version, release.updated) == (2, DATE)  # nobody saw version 1: no "update" to show


async def test_latest_is_newest_first_and_filters_by_topic(parts: Components, clock: FakeClock) -> None:
    for day, topics in ((1, ("research",)), (3, ("awards",)), (2, ("research", "awards"))):
        ann = announcement(f"day-{day}", date=DATE + timedelta(days=day), topics=topics)
        await store(parts, ann, clock)
    assert [r.id for r in await parts.releases.latest(10)] == ["day-3", "day-2", "day-1"]
    assert [r.id for r in await parts.releases.latest(2)] == ["day-3", "day-2"]
    assert [r.id for r in await parts.releases.latest(10, "research")] == ["day-2", "day-1"]
    assert await parts.releases.topics() == ["awards", "research"]
    assert await parts.releases.published_ids() == ["day-3", "day-2", "day-1"]


async def test_pages(parts: Components, clock: FakeClock) -> None:
    for n in range(5):
        await store(parts, announcement(f"r{n}", date=DATE + timedelta(days=n)), clock)
    page = await parts.releases.page(2, 2)
    assert ([r.id for r in page.releases], page.total_pages, page.total_releases) == (["r2", "r1"], 3, 5)
    assert (await parts.releases.page(1, 10, "nothing")).total_pages == 1


async def test_every_visible_change_bumps_the_site_version(parts: Components, clock: FakeClock) -> None:
    versions = [await parts.releases.site_version()]
    await store(parts, announcement(), clock)
    versions.append(await parts.releases.site_version())
    await store(parts, announcement(), clock)  # unchanged: no bump
    versions.append(await parts.releases.site_version())
    clock.advance(minutes=5)
    await parts.releases.withdraw(["first"], clock.now())
    versions.append(await parts.releases.site_version())
    assert [v.revision for v in versions] == [0, 1, 1, 2]
    assert versions[-1].changed_at == clock.now()


async def test_counts_by_state(parts: Components, clock: FakeClock) -> None:
    await store(parts, announcement("a"), clock)
    await store(parts, announcement("b", publish_at=START + timedelta(days=1)), clock)
    await store(parts, announcement("c"), clock)
    await parts.releases.withdraw(["c"], clock.now())
    counts = await parts.releases.counts()
    assert counts == {
        ReleaseState.PUBLISHED: 1,
        ReleaseState.SCHEDULED: 1,
        ReleaseState.HELD: 0,
        ReleaseState.WITHDRAWN: 1,
    }


async def test_attachments_and_unicode_round_trip(parts: Components, clock: FakeClock) -> None:
    files = (Attachment("fiche.pdf", "fiche.pdf", "application/pdf", 1234, "ab" * 32),)
    ann = announcement(title="Télécom & Société — « été »", attachments=files, author="Équipe presse")
    await store(parts, ann, clock)
    release = await parts.releases.get("first")
    assert release is not None
    assert release.announcement == ann

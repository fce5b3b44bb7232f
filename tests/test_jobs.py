"""The scan pipeline against a real folder and a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import pytest

from service import jobs
from service.ingest.inbox import CLOCK_FILE
from service.models import Release, ReleaseState
from service.runtime import Components
from tests.conftest import START, FakeClock, Inbox, release_text


async def scan(parts: Components) -> jobs.ScanReport:
    return await jobs.scan(parts.jobs)


async def visible_ids(parts: Components) -> list[str]:
    return [r.id for r in await parts.releases.latest(100)]


async def test_new_files_are_published(parts: Components, inbox: Inbox) -> None:
    inbox.release("one.md", title="One", date="2026-11-01")
    inbox.release("sub/two.md", title="Two", date="2026-11-02")
    report = await scan(parts)
    assert sorted(report.created) == ["one", "two"]
    assert report.problems == ()
    assert await visible_ids(parts) == ["two", "one"]


async def test_unchanged_files_are_not_read_again(parts: Components, inbox: Inbox) -> None:
    inbox.release("one.md")
    await scan(parts)
    report = await scan(parts)
    assert (report.unchanged, report.created, report.updated) == (1, (), ())


async def test_touching_a_file_is_not_an_edit(parts: Components, inbox: Inbox) -> None:
    path = inbox.release("one.md")
    await scan(parts)
    inbox.write("one.md", path.read_bytes(), age=5)  # same bytes, new mtime
    report = await scan(parts)
    assert report.updated == ()
    release = await parts.releases.get("one")
    assert release is not None
    assert release.version == 1


async def test_edit_updates_in_place(parts: Components, inbox: Inbox, clock: FakeClock) -> None:
    inbox.release("one.md", title="First wording")
    await scan(parts)
    before = await parts.releases.get("one")
    clock.advance(minutes=10)
    inbox.release("one.md", title="Second wording")
    report = await scan(parts)
    after = await parts.releases.get("one")
    assert report.updated == ("one",)
    assert before is not None
    assert after is not None
    assert (after.id, after.guid, after.version) == (before.id, before.guid, 2)
    assert after.announcement.title == "Second wording"
    assert after.updated == clock.now() > before.updated


async def test_delete_withdraws(parts: Components, inbox: Inbox) -> None:
    inbox.release("one.md")
    inbox.release("two.md")
    await scan(parts)
    inbox.remove("one.md")
    report = await scan(parts)
    assert report.withdrawn == ("one",)
    assert await visible_ids(parts) == ["two"]


async def test_rename_keeps_the_release(parts: Components, inbox: Inbox) -> None:
    inbox.release("old-name.md", id="stable-id")
    await scan(parts)
    (inbox.folder / "old-name.md").rename(inbox.folder / "new-name.md")
    report = await scan(parts)
    assert report.withdrawn == ()
    assert await visible_ids(parts) == ["stable-id"]


async def test_changing_the_id_withdraws_the_old_one(parts: Components, inbox: Inbox) -> None:
    inbox.release("one.md", id="old-id")
    await scan(parts)
    inbox.release("one.md", id="new-id")
    report = await scan(parts)
    assert (report.created, report.withdrawn) == (("new-id",), ("old-id",))


async def test_draft_is_not_published_and_unpublishes(parts: Components, inbox: Inbox) -> None:
    inbox.release("draft.md", draft=True)
    await scan(parts)
    assert await visible_ids(parts) == []
    inbox.release("draft.md", draft=False)
    await scan(parts)
    assert await visible_ids(parts) == ["draft"]
    inbox.release("draft.md", draft=True)
    report = await scan(parts)
    assert report.withdrawn == ("draft",)


async def test_a_broken_file_is_reported_and_the_others_publish(parts: Components, inbox: Inbox) -> None:
    inbox.write("broken.md", "---\ntitle: Broken\ndate: not-a-date\n---\nbody\n")
    inbox.write("unknown-key.md", "---\ntitle: T\ndate: 2026-11-01\ntitel: typo\n---\nbody\n")
    inbox.release("good.md")
    report = await scan(parts)
    assert report.created == ("good",)
    problems = {p.source: (p.line, p.reason) for p in report.problems}
    assert problems == {
        "broken.md": (3, "'date' is not a valid date: 'not-a-date'"),
        "unknown-key.md": (4, "unknown key 'titel'"),
    }
    assert [p.source for p in await parts.sources.problems()] == ["broken.md", "unknown-key.md"]
    assert await visible_ids(parts) == ["good"]


async def test_fixing_a_file_clears_its_problem(parts: Components, inbox: Inbox) -> None:
    inbox.write("one.md", "---\ntitle: [unclosed\n---\n")
    await scan(parts)
    assert len(await parts.sources.problems()) == 1
    inbox.release("one.md")
    report = await scan(parts)
    assert report.created == ("one",)
    assert await parts.sources.problems() == []


async def test_a_bad_edit_keeps_the_last_good_version_online(parts: Components, inbox: Inbox) -> None:
    inbox.release("one.md", title="Good version")
    await scan(parts)
    inbox.write("one.md", "---\ntitle: Broken edit\n---\n")  # date missing
    report = await scan(parts)
    assert [p.reason for p in report.problems] == ["missing required key 'date'"]
    assert report.withdrawn == ()
    release = await parts.releases.get("one")
    assert release is not None
    assert release.announcement.title == "Good version"


async def test_a_bad_edit_stays_online_across_rescans(parts: Components, inbox: Inbox) -> None:
    inbox.release("one.md", title="Good version")
    await scan(parts)
    inbox.write("one.md", "---\ntitle: Broken edit\n---\n")
    for _ in range(3):  # the periodic rescan re-reads refused files every time
        report = await scan(parts)
        assert report.withdrawn == ()
    assert await visible_ids(parts) == ["one"]


async def test_attachments_work_with_a_relative_folder(
    parts: Components, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox.write("kit.pdf", b"%PDF-1.4 test")
    inbox.release("one.md", attachments=["kit.pdf"])
    monkeypatch.chdir(inbox.folder.parent)
    parts.jobs.folder = Path(inbox.folder.name)  # as with the default announcements_dir
    report = await scan(parts)
    assert (report.created, report.problems) == (("one",), ())


async def test_a_replaced_attachment_updates_the_release(parts: Components, inbox: Inbox) -> None:
    inbox.write("kit.pdf", b"%PDF-1.4 first")
    inbox.release("one.md", attachments=["kit.pdf"])
    await scan(parts)
    inbox.write("kit.pdf", b"%PDF-1.4 second, longer", age=5)
    report = await scan(parts)
    assert report.updated == ("one",)
    release = await parts.releases.get("one")
    assert release is not None
    assert release.announcement.attachments[0].length == len(b"%PDF-1.4 second, longer")
    assert (await scan(parts)).updated == ()  # and only once


def attachment_names(release: Release | None) -> list[str]:
    assert release is not None
    return [a.name for a in release.announcement.attachments]


async def test_a_file_listed_as_an_attachment_is_not_a_release(parts: Components, inbox: Inbox) -> None:
    inbox.write("notes.txt", "Paris, 12 February 2020\n\nBackground notes for journalists.\n")
    inbox.release("one.md", attachments=["notes.txt"])
    report = await scan(parts)
    assert (report.created, report.problems) == (("one",), ())
    assert attachment_names(await parts.releases.get("one")) == ["notes.txt"]
    assert (await scan(parts)).created == ()


async def test_a_release_that_becomes_an_attachment_is_withdrawn(parts: Components, inbox: Inbox) -> None:
    inbox.write("notes.txt", "Paris, 12 February 2020\n\nBackground notes for journalists.\n")
    assert (await scan(parts)).created == ("notes",)
    inbox.release("one.md", attachments=["notes.txt"])
    report = await scan(parts)
    assert (report.created, report.withdrawn) == (("one",), ("notes",))
    assert await visible_ids(parts) == ["one"]


async def test_files_named_after_a_release_are_published_with_it(parts: Components, inbox: Inbox) -> None:
    inbox.release("brest-lab.md", id="brest-lab")
    inbox.write("brest-lab.jpg", b"\xff\xd8\xff photo")
    inbox.write("brest-lab.txt", "Paris, 12 February 2020\n\nThe plain-text version of the release.\n")
    inbox.write("brest-laboratory.png", b"\x89PNG not ours")
    report = await scan(parts)
    assert (report.created, report.problems) == (("brest-lab",), ())
    assert attachment_names(await parts.releases.get("brest-lab")) == ["brest-lab.jpg", "brest-lab.txt"]
    inbox.write("brest-lab.map.pdf", b"%PDF-1.4 map")  # a new companion re-reads the release
    report = await scan(parts)
    assert report.updated == ("brest-lab",)
    assert "brest-lab.map.pdf" in attachment_names(await parts.releases.get("brest-lab"))
    inbox.remove("brest-lab.jpg")
    assert (await scan(parts)).updated == ("brest-lab",)
    assert "brest-lab.jpg" not in attachment_names(await parts.releases.get("brest-lab"))


async def test_duplicate_ids_across_files(parts: Components, inbox: Inbox) -> None:
    inbox.release("a.md", id="same", title="A")
    inbox.release("b.md", id="same", title="B")
    report = await scan(parts)
    assert report.created == ("same",)
    [problem] = report.problems
    assert (problem.source, problem.reason) == ("b.md", "id 'same' is already used by a.md")
    released = await parts.releases.get("same")
    assert released is not None
    assert released.announcement.title == "A"


async def test_a_file_still_being_written_is_deferred(parts: Components, inbox: Inbox) -> None:
    inbox.write("fresh.md", release_text(), age=0)
    report = await scan(parts)
    assert (report.deferred, report.created) == (("fresh.md",), ())
    await asyncio.sleep(parts.jobs.settle_seconds + 0.05)  # the real settle interval, bounded and short
    assert (await scan(parts)).created == ("fresh",)


async def test_embargo_publishes_on_time(parts: Components, inbox: Inbox, clock: FakeClock) -> None:
    embargo = START + timedelta(hours=1)
    inbox.release("later.md", publish_at=embargo.isoformat())
    report = await scan(parts)
    assert report.created == ("later",)
    assert await visible_ids(parts) == []
    clock.set(embargo - timedelta(seconds=1))
    assert await jobs.publish_due(parts.jobs) == []
    clock.set(embargo)
    assert [r.id for r in await jobs.publish_due(parts.jobs)] == ["later"]
    assert await visible_ids(parts) == ["later"]


async def test_an_embargo_missed_within_the_grace_is_published_by_the_next_scan(
    parts: Components, inbox: Inbox, clock: FakeClock
) -> None:
    inbox.release("later.md", publish_at=(START + timedelta(minutes=5)).isoformat())
    await scan(parts)
    clock.advance(minutes=5 + 29)  # down at the embargo time, back within the 30-minute grace
    assert (await scan(parts)).published == ("later",)


async def test_an_embargo_missed_by_more_than_the_grace_is_held_for_an_operator(
    parts: Components, inbox: Inbox, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    embargo = START + timedelta(minutes=5)
    inbox.release("later.md", publish_at=embargo.isoformat(), topics=["research"])
    await scan(parts)
    clock.advance(hours=3)  # the service was down at the embargo time, for longer than the grace
    report = await scan(parts)
    assert report.published == ()
    assert await visible_ids(parts) == []
    assert await parts.releases.held() == [("later", embargo, clock.now())]
    assert "embargo missed: release held; publish it with `announce release later`" in caplog.text
    inbox.release("later.md", publish_at=embargo.isoformat(), topics=["research"], body="Edited.")
    await scan(parts)  # an edit does not release it either
    assert (await parts.releases.counts())[ReleaseState.HELD] == 1
    clock.advance(minutes=10)
    released = await jobs.release_held(parts.jobs, "later")
    assert released is not None
    assert (released.state, released.published_at) == (ReleaseState.PUBLISHED, clock.now())
    assert await visible_ids(parts) == ["later"]
    assert await parts.releases.held() == []
    assert await jobs.release_held(parts.jobs, "later") is None  # only once


async def test_a_held_release_moved_to_a_new_embargo_is_scheduled_again(
    parts: Components, inbox: Inbox, clock: FakeClock
) -> None:
    inbox.release("later.md", publish_at=(START + timedelta(minutes=5)).isoformat())
    await scan(parts)
    clock.advance(hours=3)
    await scan(parts)
    new_embargo = clock.now() + timedelta(hours=1)
    inbox.release("later.md", publish_at=new_embargo.isoformat())
    await scan(parts)
    assert (await parts.releases.counts())[ReleaseState.HELD] == 0
    assert await parts.releases.embargoes() == [("later", new_embargo)]
    clock.set(new_embargo)
    assert [r.id for r in await jobs.publish_due(parts.jobs)] == ["later"]


async def test_a_release_dropped_after_its_embargo_is_published_at_once(
    parts: Components, inbox: Inbox
) -> None:
    inbox.release("late.md", publish_at=(START - timedelta(days=2)).isoformat())
    assert (await scan(parts)).created == ("late",)
    assert await visible_ids(parts) == ["late"]
    assert await parts.releases.held() == []


async def test_metrics_follow_the_store(parts: Components, inbox: Inbox) -> None:
    inbox.release("one.md")
    inbox.write("bad.md", "no front matter\n")
    await scan(parts)
    text = parts.metrics.render().decode()
    assert 'announce_releases{state="published"} 1.0' in text
    assert "announce_file_problems 1.0" in text
    assert "announce_ingest_errors_total 1.0" in text


async def test_store_state_counts(parts: Components, inbox: Inbox) -> None:
    inbox.release("a.md")
    inbox.release("b.md", publish_at=(START + timedelta(days=2)).isoformat())
    await scan(parts)
    counts = await parts.releases.counts()
    assert (counts[ReleaseState.PUBLISHED], counts[ReleaseState.SCHEDULED]) == (1, 1)


# --- the settle check uses the folder's clock ------------------------------------------------------
# On a network share, file times are the server's; this machine's clock may be minutes away. The
# only thing mocked is this machine's clock (time.time_ns as the scan sees it).


@pytest.mark.parametrize("skew_seconds", [3600, -3600], ids=["our clock ahead", "our clock behind"])
async def test_settling_ignores_this_machines_clock_skew(
    parts: Components, inbox: Inbox, monkeypatch: pytest.MonkeyPatch, skew_seconds: int
) -> None:
    inbox.write("fresh.md", release_text(), age=0)
    real = time.time_ns  # patched after writing: the module is shared, and the file's time is real
    monkeypatch.setattr(jobs.time, "time_ns", lambda: real() + skew_seconds * 1_000_000_000)
    # Ahead, a file just written looked an hour old and was read half-written.
    assert (await scan(parts)).deferred == ("fresh.md",)
    await asyncio.sleep(parts.jobs.settle_seconds + 0.05)
    # Behind, it looked written an hour in the future and waited an hour.
    assert (await scan(parts)).created == ("fresh",)


async def test_a_folder_that_cannot_be_written_falls_back_to_this_machines_clock(
    parts: Components, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    inbox.release("old.md")
    # A probe that cannot be touched, even by root (a read-only share would do the same).
    (inbox.folder / CLOCK_FILE).symlink_to(inbox.folder / "no-such-folder" / "clock")
    assert (await scan(parts)).created == ("old",)
    assert "announcements folder is read-only" in caplog.text


async def test_a_slow_writer_is_read_only_once_complete(parts: Components, inbox: Inbox) -> None:
    """Chunks written more than one scan apart but within settle_seconds: never read half-written."""
    path = inbox.folder / "slow.md"
    text = release_text(title="Written slowly", body="First paragraph.\n\n" + "Words. " * 200 + "\n\nTHE END")
    chunks = [text[i : i + 400] for i in range(0, len(text), 400)]
    reports = []
    with path.open("w", encoding="utf-8") as out:
        for chunk in chunks:
            out.write(chunk)
            out.flush()
            reports.append(await scan(parts))
            await asyncio.sleep(parts.jobs.settle_seconds / 3)
    assert all(r.created == () and r.problems == () for r in reports)  # deferred, never refused
    await asyncio.sleep(parts.jobs.settle_seconds + 0.05)
    assert (await scan(parts)).created == ("slow",)
    release = await parts.releases.get("slow")
    assert release is not None
    assert "THE END" in release.announcement.body_html


# --- error reports beside refused files ------------------------------------------------------------


async def test_a_refused_file_gets_a_report_beside_it_until_it_is_fixed(
    parts: Components, inbox: Inbox
) -> None:
    inbox.write("broken.md", "---\ntitle: Broken\ndate: next tuesday\n---\n\nBody.\n")
    inbox.release("good.md", title="Good")
    report = await scan(parts)
    assert report.created == ("good",)
    text = (inbox.folder / "broken.md.error.txt").read_text(encoding="utf-8")
    assert text.splitlines()[:4] == [
        "This file was not published: broken.md",
        "",
        "Line:       3",
        "Reason:     'date' is not a valid date: 'next tuesday'",
    ]
    assert "How to fix: use ISO 8601" in text
    assert sorted(p.name for p in inbox.folder.iterdir() if not p.name.startswith(".")) == [
        "broken.md", "broken.md.error.txt", "good.md",
    ]  # fmt: skip
    assert (await scan(parts)).created == ()  # the report is never read as a release or attachment
    inbox.release("broken.md", title="Broken")
    assert (await scan(parts)).created == ("broken",)
    assert not (inbox.folder / "broken.md.error.txt").exists()


async def test_the_report_of_a_deleted_file_goes_with_it(parts: Components, inbox: Inbox) -> None:
    inbox.write("sub/broken.md", "no front matter\n")
    await scan(parts)
    assert (inbox.folder / "sub" / "broken.md.error.txt").is_file()
    inbox.remove("sub/broken.md")
    await scan(parts)
    assert not (inbox.folder / "sub" / "broken.md.error.txt").exists()

"""The drop folder: which files are release candidates, and the watcher that reports changes."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from pathlib import Path

import pytest

from service.ingest.inbox import FileStat, is_ignored, list_release_files, watch


def touch(folder: Path, name: str, content: str = "x") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def sources(folder: Path) -> list[str]:
    return [f.source for f in list_release_files(folder)]


# ---- listing ------------------------------------------------------------------------------------


def test_finds_release_files_recursively_sorted_with_posix_sources(tmp_path: Path) -> None:
    for name in ["b.markdown", "a.md", "sub/c.md", "sub/deeper/d.md", "sub/deeper/Upper.MD"]:
        touch(tmp_path, name)
    assert sources(tmp_path) == ["a.md", "b.markdown", "sub/c.md", "sub/deeper/Upper.MD", "sub/deeper/d.md"]


def test_file_stat_fields(tmp_path: Path) -> None:
    path = touch(tmp_path, "2020/release.md", "twelve bytes")
    os.utime(path, ns=(1_600_000_000_000_000_000, 1_600_000_000_123_456_789))
    assert list_release_files(tmp_path) == [
        FileStat("2020/release.md", tmp_path / "2020" / "release.md", 12, 1_600_000_000_123_456_789)
    ]


def test_paths_are_absolute_even_for_a_relative_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    touch(tmp_path, "inbox/x.md")
    monkeypatch.chdir(tmp_path)
    [entry] = list_release_files(Path("inbox"))
    assert entry.source == "x.md"
    assert entry.path == tmp_path / "inbox" / "x.md"


@pytest.mark.parametrize(
    "name",
    [
        ".hidden.md",
        "x.md~",
        "x.md.tmp",
        "x.md.part",
        ".x.md.swp",
        ".~lock.x.md#",
        "~$x.md",
        "x.jpg",
        "x.md.error.txt",
        "markdown",
        "x.mdx",
    ],
)
def test_temporary_hidden_and_other_files_are_ignored(tmp_path: Path, name: str) -> None:
    touch(tmp_path, "keep.md")
    touch(tmp_path, name)
    assert sources(tmp_path) == ["keep.md"]


@pytest.mark.parametrize("folder", [".git", ".drafts", ".Trash-1000", "sub/.hidden", "backup~"])
def test_files_in_hidden_or_temporary_folders_are_ignored(tmp_path: Path, folder: str) -> None:
    touch(tmp_path, "keep.md")
    touch(tmp_path, f"{folder}/x.md")
    assert sources(tmp_path) == ["keep.md"]


def test_a_folder_named_like_a_release_is_not_a_release(tmp_path: Path) -> None:
    (tmp_path / "folder.md").mkdir()
    touch(tmp_path, "folder.md/inner.md")
    assert sources(tmp_path) == ["folder.md/inner.md"]


def test_missing_folder_lists_nothing(tmp_path: Path) -> None:
    assert list_release_files(tmp_path / "absent") == []


def test_symlink_to_a_file_inside_the_folder_is_listed(tmp_path: Path) -> None:
    target = touch(tmp_path, "archive/original.md", "original")
    (tmp_path / "link.md").symlink_to(target)
    found = {f.source: f for f in list_release_files(tmp_path)}
    assert sorted(found) == ["archive/original.md", "link.md"]
    assert found["link.md"].path == tmp_path / "link.md"
    assert found["link.md"].size == len("original")


def test_relative_symlink_inside_the_folder_is_listed(tmp_path: Path) -> None:
    touch(tmp_path, "original.md")
    (tmp_path / "link.md").symlink_to("original.md")
    assert sources(tmp_path) == ["link.md", "original.md"]


def test_symlink_pointing_outside_the_folder_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = tmp_path / "inbox"
    secret = touch(tmp_path, "secret.md", "outside")
    touch(inbox, "keep.md")
    (inbox / "escape.md").symlink_to(secret)
    with caplog.at_level(logging.WARNING, logger="service.ingest.inbox"):
        assert sources(inbox) == ["keep.md"]
    assert any(
        "escape.md" in r.getMessage() and "inside the announcements folder" in r.getMessage()
        for r in caplog.records
    )


def test_symlinked_folder_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    touch(outside, "secret.md")
    inbox = tmp_path / "inbox"
    touch(inbox, "keep.md")
    (inbox / "linked").symlink_to(outside, target_is_directory=True)
    assert sources(inbox) == ["keep.md"]


def test_broken_symlink_is_skipped(tmp_path: Path) -> None:
    touch(tmp_path, "keep.md")
    (tmp_path / "dangling.md").symlink_to(tmp_path / "gone.md")
    assert sources(tmp_path) == ["keep.md"]


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    touch(tmp_path, "keep.md")
    os.mkfifo(tmp_path / "pipe.md")
    result: list[list[str]] = []
    # A daemon thread, so that a listing which opens the FIFO fails this test instead of hanging the run.
    worker = threading.Thread(target=lambda: result.append(sources(tmp_path)), daemon=True)
    worker.start()
    worker.join(timeout=5)
    assert not worker.is_alive(), "list_release_files blocked on a FIFO"
    assert result == [["keep.md"]]


def test_listing_is_sorted_by_path_across_folders(tmp_path: Path) -> None:
    for name in ["b.md", "a/z.md", "c/y.md"]:
        touch(tmp_path, name)
    assert sources(tmp_path) == ["a/z.md", "b.md", "c/y.md"]


# ---- ignored names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ignored"),
    [
        ("release.md", False),
        ("2020-02-12 Carnot Label É.md", False),
        ("release.markdown", False),
        ("tmp.md", False),
        ("part.md", False),
        ("x~y.md", False),
        ("x.swp.md", False),
        ("lock.md", False),
        ("$x.md", False),
        (".hidden.md", True),
        (".git", True),
        ("x.md~", True),
        ("x.md.tmp", True),
        ("x.md.part", True),
        (".x.md.swp", True),
        ("x.swp", True),
        (".~lock.x.md#", True),
        ("~$x.md", True),
        ("x.md.error.txt", True),
    ],
)
def test_is_ignored(name: str, ignored: bool) -> None:
    assert is_ignored(name) is ignored


# ---- watcher ------------------------------------------------------------------------------------


async def test_watch_calls_on_change_when_a_file_is_written_and_stops_when_asked(tmp_path: Path) -> None:
    folder = tmp_path / "inbox"  # watch() creates it
    changed = asyncio.Event()
    calls = 0

    async def on_change() -> None:
        nonlocal calls
        calls += 1
        changed.set()

    stop = asyncio.Event()
    task = asyncio.create_task(watch(folder, on_change, stop))

    async def write_until_noticed() -> None:
        # The watcher starts asynchronously: keep writing until it has seen one of the writes.
        for n in range(1000):
            if folder.is_dir():
                (folder / f"release-{n}.md").write_text(f"version {n}")
            try:
                await asyncio.wait_for(changed.wait(), timeout=0.25)
                return
            except TimeoutError:
                continue

    try:
        await asyncio.wait_for(write_until_noticed(), timeout=5)
        assert calls >= 1
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)
    assert task.done()
    assert task.exception() is None


async def test_watch_ignores_temporary_files(tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    changed = asyncio.Event()

    async def on_change() -> None:
        changed.set()

    stop = asyncio.Event()
    task = asyncio.create_task(watch(folder, on_change, stop))
    try:
        # Prove the watcher is live with real files, then write only ignored names and expect silence.
        for n in range(20):
            (folder / f"probe-{n}.md").write_text("x")
            try:
                await asyncio.wait_for(changed.wait(), timeout=0.25)
                break
            except TimeoutError:
                continue
        assert changed.is_set()
        await asyncio.sleep(0.6)  # let the debounce window of the probe writes close
        changed.clear()
        for name in [".hidden.md", "x.md~", "x.md.tmp", "x.md.part", ".x.md.swp", "~$x.md"]:
            (folder / name).write_text("temporary")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout=1.0)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)


def test_companions_are_named_after_their_release(tmp_path: Path) -> None:
    for name in (
        "carnot.md", "carnot.pdf", "carnot.jpg", "carnot.photo.png", "carnot.fr.md", "carnot.fr.jpg",
        "carnot.map.pdf", "carnot.map.png", "carnotx.png", "other.pdf", "other.txt", "notes.docx",
        "lone.png", ".carnot.swp",
    ):  # fmt: skip
        (tmp_path / name).write_bytes(b"x")
    found = {f.source: f.companions for f in list_release_files(tmp_path, {"en", "fr"})}
    assert found == {
        "carnot.md": ("carnot.jpg", "carnot.map.pdf", "carnot.map.png", "carnot.pdf", "carnot.photo.png"),
        "carnot.fr.md": ("carnot.fr.jpg",),  # a translation, not a companion
        "notes.docx": (),
        "other.txt": ("other.pdf",),  # the text is the release, the PDF its original
    }
    (tmp_path / "carnot.de.pdf").write_bytes(b"x")  # de is not a site language: not a translation
    assert (
        "carnot.de.pdf"
        in {f.source: f.companions for f in list_release_files(tmp_path, {"en", "fr"})}["carnot.md"]
    )

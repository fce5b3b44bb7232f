"""The drop folder: which files are release candidates, and a watcher that says when it changed."""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import logging
import os
import stat
from collections.abc import Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import watchfiles

from service.ingest.reader import format_rank

log = logging.getLogger(__name__)

# Editors, office suites and copy tools write under these names before renaming into place.
IGNORED_NAMES = (".*", "*~", "*.tmp", "*.part", "*.swp", ".~lock.*", "~$*", "*.error.txt")


@dataclass(frozen=True, slots=True)
class FileStat:
    """A candidate release file and the stat fields used to notice changes cheaply."""

    source: str  # relative to the folder, '/'-separated
    path: Path
    size: int
    mtime_ns: int
    companions: tuple[str, ...] = ()  # names of files beside it published with it (`<stem>.*`)


CLOCK_FILE = ".announce-clock"  # touched by each scan to read the folder's clock (folder_time_ns)


def is_ignored(name: str) -> bool:
    """True for temporary and hidden names that must never be ingested."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in IGNORED_NAMES)


def folder_time_ns(folder: Path) -> int | None:
    """The current time by the clock that stamps the folder's files; None if the folder is read-only.

    Touches `CLOCK_FILE` (a hidden name: never a release, ignored by the watcher) and reads its
    modification time back. On a network share file times come from the server's clock, which may
    be minutes away from this machine's: comparing them with the server's own "now" keeps the settle
    check from reading a file still being written (server behind) or waiting for hours (ahead).
    """
    probe = folder / CLOCK_FILE
    try:
        probe.touch()
        return probe.stat().st_mtime_ns
    except OSError:
        return None


def list_release_files(folder: Path, languages: Collection[str] = ()) -> list[FileStat]:
    """Every release file under `folder`, sorted by path; hidden folders, temp names and non-files skipped.

    Files named after a release (`brest-lab.md` and `brest-lab.jpg`, `brest-lab.map.pdf`) are its
    companions, not releases; of release files sharing a stem, the most editable format is the release
    and the others (its `.pdf` export) are companions too. `carnot.fr.md` beside `carnot.md` is a
    release of its own (a translation) when `fr` is one of `languages`.
    """
    found: list[FileStat] = []
    root = folder.absolute()
    real_root = root.resolve()
    for directory, subdirs, names in os.walk(root, followlinks=False):
        subdirs[:] = sorted(d for d in subdirs if not is_ignored(d))
        visible = sorted(name for name in names if not is_ignored(name))
        for name, companions in _releases_in(visible, languages).items():
            entry = _stat_regular(Path(directory, name), root, real_root)
            if entry is not None:
                found.append(dataclasses.replace(entry, companions=companions))
    # By path components, so "a/z.md" sorts before "b.md" exactly as `announce check` lists them.
    return sorted(found, key=lambda f: PurePosixPath(f.source).parts)


def companions_of(path: Path, languages: Collection[str] = ()) -> tuple[str, ...]:
    """The companions of one release file, as a scan of its folder would find them."""
    try:
        names = sorted(n for n in os.listdir(path.parent) if not is_ignored(n))
    except OSError:
        return ()
    return _releases_in(names, languages).get(path.name, ())


def _releases_in(names: list[str], languages: Collection[str]) -> dict[str, tuple[str, ...]]:
    # Release file name -> its companions, for the (sorted, visible) names of one directory.
    best: dict[str, tuple[int, str]] = {}  # stem -> (rank, name) of the release among files sharing it
    for name in names:
        rank = format_rank(name)
        stem = PurePosixPath(name).stem
        if rank is not None and (stem not in best or rank < best[stem][0]):
            best[stem] = (rank, name)
    owner: dict[str, str] = {}  # name -> the release file it belongs to
    for name in names:
        own = PurePosixPath(name).stem
        rank = format_rank(name)
        if rank is not None and best[own][1] == name:
            # A release file, unless named after a more editable release ("x.map.pdf" beside "x.md")
            # without being a translation of it ("x.fr.md").
            parent = next((s for s in _prefixes(own) if s in best and best[s][0] < rank), None)
            if parent is None or own[len(parent) + 1 :].lower() in languages:
                continue
            owner[name] = best[parent][1]
        elif own in best:
            owner[name] = best[own][1]
        else:
            parent = next((s for s in _prefixes(name) if s in best), None)
            if parent is not None:
                owner[name] = best[parent][1]
    releases: dict[str, list[str]] = {name: [] for _, name in best.values() if name not in owner}
    for name, release in owner.items():
        while release in owner:  # "x.map.jpg" belongs to "x.map.pdf", which belongs to "x.md"
            release = owner[release]
        releases[release].append(name)
    return {name: tuple(companions) for name, companions in releases.items()}


def _prefixes(name: str) -> Iterator[str]:
    # "a.b.c" -> "a.b", "a": the stems a file named after a release may start with, longest first
    # (one dictionary lookup each, so a folder of 10,000 files is not 10,000 x 10,000 comparisons).
    end = name.rfind(".")
    while end > 0:
        yield name[:end]
        end = name.rfind(".", 0, end)


def _stat_regular(path: Path, root: Path, real_root: Path) -> FileStat | None:
    # Symlinks are followed only when they stay inside the folder; devices and FIFOs are never read.
    try:
        info = path.stat()
        inside = path.resolve().is_relative_to(real_root)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode) or not inside:
        log.warning("refused %s: not a regular file inside the announcements folder", path)
        return None
    return FileStat(path.relative_to(root).as_posix(), path, info.st_size, info.st_mtime_ns)


async def watch(folder: Path, on_change: Callable[[], Awaitable[None]], stop: asyncio.Event) -> None:
    """Call `on_change` whenever something in `folder` changes, until `stop` is set."""
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    async for changes in watchfiles.awatch(
        folder,
        stop_event=stop,
        debounce=400,
        step=50,
        recursive=True,
        ignore_permission_denied=True,
    ):
        if any(not is_ignored(Path(p).name) for _, p in changes):
            await on_change()

"""Archive scale: startup and rescan with 10,000 release files, and the time to render a feed.

In a temporary folder of `--files` Markdown releases, all in the inbox folder itself (`--layout
flat`, as the shipped announcements/ is laid out) or in yearly subfolders (`--layout yearly`), on
SQLite:

1. first start: `announce run` until /healthz answers (the first scan ingests every file);
2. restart with every file unchanged, `--rounds` times, interleaved with the reference: the same
   service starting on an archive of one file (the fixed cost of a start: interpreter, imports,
   migrations check); the extra is what 10,000 unchanged files cost;
3. rescan in process (`jobs.scan`), nothing changed and one file edited, interleaved with the
   floor of a rescan: listing and stat()ing the files (`list_release_files`);
4. feed render: the newest 50 releases read from the store and rendered as Atom (`render_feed`,
   feedgen), against the same entries and texts written with lxml directly.

The service runs pinned to CPU 1; this process (the in-process parts) to CPU 0.

    python benchmarks/archive_scale.py [--files 10000] [--layout flat|yearly] [--rounds 5] [--profile]
                                       [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import benchlib as lib
from feed_serving import PARAGRAPH

STARTUP_TARGET = 5.0
# Where a restart's CPU goes, for --profile (first matching stage wins).
STAGES: dict[str, list[str]] = {
    "imports": ["<frozen importlib._bootstrap>"],
    "migrations check (alembic)": ["alembic/", "migrate (service/store/database.py"],
    "scan: list + stat the files": ["list_release_files (service/ingest/inbox.py"],
    "scan: load the sources table": ["snapshot (service/store/sources.py"],
    "scan: compare (_Pass.ingest)": ["ingest (service/jobs.py"],
    "scan: withdrawals check": ["withdraw (service/jobs.py"],
    "scan: the rest (publish, counts, record)": ["scan (service/jobs.py"],
    "database driver thread": ["aiosqlite/", "sqlalchemy/"],
    "uvicorn, app, scheduler": ["uvicorn/", "starlette/", "fastapi/", "apscheduler/"],
    "asyncio event loop": ["asyncio/"],
}
TOPICS = ("research", "industry", "education", "health", "energy")
RELEASE = """\
---
title: Release {n} of the archive benchmark about {topic}
date: {date}
summary: >-
  One of the releases of a large archive, for the archive-scale benchmark.
topics: [{topic}]
lang: en
---

{paragraph}

{paragraph}
"""
KEY_FUNCTIONS = [
    "<frozen importlib._bootstrap>", "Database.migrate", "scan (service/jobs.py", "list_release_files",
    "Sources.snapshot", "_Pass.ingest", "_Pass.withdraw", "_connection_worker_thread", "sqlalchemy/",
]  # fmt: skip


def write_archive(folder: Path, count: int, flat: bool = True) -> None:
    start = datetime(2000, 1, 1, 9, tzinfo=UTC)
    for n in range(count):
        date = start + timedelta(hours=19 * n)
        year = folder if flat else folder / f"{date:%Y}"
        year.mkdir(parents=True, exist_ok=True)
        text = RELEASE.format(n=n, date=date.isoformat(), topic=TOPICS[n % len(TOPICS)], paragraph=PARAGRAPH)
        (year / f"{date:%Y-%m-%d-%H}-release-{n}.md").write_text(text, encoding="utf-8")


def start_and_wait(folder: Path) -> float:
    """Seconds from launching `announce run` to its first 200 on /healthz (after the startup scan)."""
    port = lib.free_port()
    started = time.monotonic()
    process = lib.start_service(folder, port, cpu=lib.SINK_CPU, log=folder / "service.log", settle_seconds=0)
    try:
        lib.wait_healthy(f"http://127.0.0.1:{port}", process, timeout=1800)
        return time.monotonic() - started
    finally:
        lib.stop(process)


def profile_startup(folder: Path) -> None:
    """One more restart, launched by py-spy: where the startup's samples fall."""
    spy = lib.py_spy()
    if spy is None:
        print("profile: py-spy not found (pip install py-spy)")
        return
    raw = Path(tempfile.mkdtemp(prefix="startup-profile-")) / "startup.collapsed"
    port = lib.free_port()
    service = [sys.executable, "-m", "service", "run", "--port", str(port)]
    service += ["--config", str(lib.REPO / "config.yaml")]
    command = [spy, "record", "--gil", "--rate", "250", "--format", "raw", "--output", str(raw)]
    command += ["--", *service]
    process = subprocess.Popen(
        lib.pinned(lib.SINK_CPU, command),
        cwd=folder,
        env=lib.service_env(folder, settle_seconds=0),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        lib.wait_healthy(f"http://127.0.0.1:{port}", process, timeout=600)
    finally:
        for child in lib.children_of(process.pid):  # the service py-spy started for us
            os.kill(child, signal.SIGTERM)
        process.wait(timeout=60)
    print(f"py-spy profile of a restart with every file unchanged (until /healthz answers); raw: {raw}")
    print(lib.summarise_profile(raw, STAGES, inclusive=KEY_FUNCTIONS))


# ---- in process ---------------------------------------------------------------------------------------


def lxml_atom(releases: list[Any], site: Any) -> bytes:
    """The reference: the same feed elements and texts, written with lxml directly."""
    from lxml import etree

    from service.render.content import reader_body
    from service.render.site import Site

    atom = "http://www.w3.org/2005/Atom"
    feed = etree.Element(f"{{{atom}}}feed", nsmap={None: atom})
    feed.set("{http://www.w3.org/XML/1998/namespace}lang", site.language)

    def sub(parent: Any, tag: str, text: str | None = None, **attrs: str) -> Any:
        element = etree.SubElement(parent, f"{{{atom}}}{tag}", attrs)
        element.text = text
        return element

    sub(feed, "id", site.url("/"))
    sub(feed, "title", site.title)
    sub(feed, "updated", max(r.updated for r in releases).astimezone(UTC).isoformat())
    sub(sub(feed, "author"), "name", site.author)
    sub(feed, "link", href=site.url("/feed.atom"), rel="self")
    sub(feed, "link", href=site.url("/"), rel="alternate")
    sub(feed, "generator", "announce")
    sub(feed, "subtitle", site.description)
    for release in releases:
        ann = release.announcement
        entry = sub(feed, "entry")
        sub(entry, "id", release.guid)
        sub(entry, "title", ann.title)
        sub(entry, "updated", release.updated.astimezone(UTC).isoformat())
        sub(sub(entry, "author"), "name", ann.author or site.author)
        sub(entry, "content", reader_body(release, site.timezone), type="html")
        sub(entry, "link", href=site.url(Site.permalink_path(release.id)), rel="alternate")
        sub(entry, "summary", ann.summary)
        for topic in ann.topics:
            sub(entry, "category", term=topic)
        sub(entry, "published", ann.date.astimezone(UTC).isoformat())
    return bytes(etree.tostring(feed, pretty_print=True, xml_declaration=True, encoding="UTF-8"))


async def in_process(folder: Path, rounds: int, renders: int) -> dict[str, list[float]]:
    from service import jobs
    from service.config import Settings
    from service.ingest.inbox import list_release_files
    from service.render.feeds import render_feed
    from service.render.site import FeedKind
    from service.runtime import build

    settings = Settings(
        announcements_dir=folder / "announcements", data_dir=folder / "var",
        templates_dir=lib.REPO / "templates", settle_seconds=0, log_level="WARNING",
    )  # fmt: skip
    parts = build(settings)
    ctx = parts.jobs
    await parts.database.migrate()
    edited = sorted(settings.announcements_dir.rglob("*.md"))[-1]
    warm = await parts.releases.latest(settings.feed_size)  # first calls import and set up lazily
    render_feed(FeedKind.ATOM, warm, parts.site)
    lxml_atom(warm, parts.site)
    times: dict[str, list[float]] = {k: [] for k in ("walk", "rescan", "edit", "query", "feedgen", "lxml")}

    def timed(key: str, started: float) -> None:
        times[key].append(time.perf_counter() - started)

    for round_no in range(rounds):
        for case in lib.interleaved(["walk", "rescan", "edit", "render"], round_no):
            started = time.perf_counter()
            if case == "walk":
                files = await asyncio.to_thread(list_release_files, ctx.folder, ctx.options.languages)
                timed("walk", started)
            elif case == "rescan":
                report = await jobs.scan(ctx)
                timed("rescan", started)
                assert report.unchanged == len(files), report
                assert not report.changed, report
            elif case == "edit":
                text = edited.read_text(encoding="utf-8")
                edited.write_text(text.replace("archive benchmark", f"archive benchmark ({round_no})", 1))
                mtime = time.time_ns() - 10**9  # settled: older than settle_seconds (0) anyway
                os.utime(edited, ns=(mtime, mtime))
                started = time.perf_counter()
                report = await jobs.scan(ctx)
                timed("edit", started)
                assert len(report.updated) == 1, report
            else:
                for _ in range(renders):
                    started = time.perf_counter()
                    releases = await parts.releases.latest(settings.feed_size)
                    timed("query", started)
                    started = time.perf_counter()
                    render_feed(FeedKind.ATOM, releases, parts.site)
                    timed("feedgen", started)
                    started = time.perf_counter()
                    lxml_atom(releases, parts.site)
                    timed("lxml", started)
    await parts.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--layout", choices=["flat", "yearly"], default="flat")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--renders", type=int, default=10, help="feed renders per round")
    parser.add_argument("--profile", action="store_true", help="then profile one restart (py-spy)")
    parser.add_argument("--smoke", action="store_true", help="200 files, 1 round")
    args = parser.parse_args()
    if args.smoke:
        args.files, args.rounds, args.renders = 200, 1, 2
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {lib.SENDER_CPU})
    tmp = Path(tempfile.mkdtemp(prefix="archive-scale-"))
    small = Path(tempfile.mkdtemp(prefix="archive-one-"))
    try:
        started = time.perf_counter()
        write_archive(tmp / "announcements", args.files, flat=args.layout == "flat")
        write_archive(small / "announcements", 1)
        written = time.perf_counter() - started
        print(
            f"{args.files:,} release files ({args.layout}) written in {written:.1f} s; {lib.pinning_note()}"
        )
        first = start_and_wait(tmp)
        start_and_wait(small)
        rate = args.files / first
        print(f"first start (ingests every file): {first:.1f} s, {rate:,.0f} files/s", flush=True)
        restart: list[float] = []
        baseline: list[float] = []
        for round_no in range(args.rounds):
            for case in lib.interleaved(["archive", "one"], round_no):
                if case == "archive":
                    restart.append(start_and_wait(tmp))
                else:
                    baseline.append(start_and_wait(small))
            print(f"round {round_no + 1}: restart, {args.files:,} unchanged files {restart[-1]:.2f} s; "
                  f"one file {baseline[-1]:.2f} s", flush=True)  # fmt: skip
        if args.profile:
            profile_startup(tmp)
        times = lib.run(in_process(tmp, args.rounds, args.renders))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(small, ignore_errors=True)
    m = {key: lib.median(values) for key, values in times.items()}
    start, base = lib.median(restart), lib.median(baseline)
    print(
        f"startup, {args.files:,} unchanged files (median): {start:.2f} s; with one file: {base:.2f} s; "
        f"ratio {start / base:.2f}; the files cost {start - base:.2f} s  "
        f"(target <= {STARTUP_TARGET:g} s: {lib.verdict(start <= STARTUP_TARGET)})"
    )
    print(
        f"rescan, nothing changed: {1000 * m['rescan']:.0f} ms; one file edited: {1000 * m['edit']:.0f} ms; "
        f"listing + stat() alone: {1000 * m['walk']:.0f} ms; rescan / listing {m['rescan'] / m['walk']:.1f}"
    )
    print(
        f"feed render (50 entries): store query {1000 * m['query']:.1f} ms + "
        f"feedgen {1000 * m['feedgen']:.1f} ms; lxml reference {1000 * m['lxml']:.1f} ms; "
        f"feedgen / lxml {m['feedgen'] / m['lxml']:.2f}"
    )


if __name__ == "__main__":
    main()

"""The `announce` command line: run, check, build, status, release, migrate."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from service import __version__, cli_mail, cli_subscribers, jobs
from service.config import Settings, load_settings
from service.errors import AnnouncementError, ServiceError
from service.export import Exporter
from service.ingest.inbox import companions_of, list_release_files
from service.ingest.options import IngestOptions
from service.ingest.plaintext import outline
from service.ingest.reader import read_release
from service.logs import configure_logging
from service.models import Announcement
from service.runtime import build, event_loop_factory, serve


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="config file (default: ./config.yaml if present)")
    common.add_argument(
        "--announcements", type=Path, metavar="DIR", help="the drop folder (announcements_dir)"
    )
    parser = argparse.ArgumentParser(
        prog="announce",
        description="Press releases in a folder, published as feeds, pages and bulletins.",
    )
    parser.add_argument("--version", action="version", version=f"announce {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", parents=[common], help="serve HTTP, watch the folder, publish on time")
    run.add_argument("--host", help="listen address (http_host)")
    run.add_argument("--port", type=int, help="listen port (http_port)")
    check = commands.add_parser("check", parents=[common], help="validate release files, publish nothing")
    check.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="files or folders (default: the drop folder)",
    )
    build = commands.add_parser("build", parents=[common], help="write the feeds and archive as static files")
    build.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    commands.add_parser("status", parents=[common], help="counts, last scan, refused files, deliveries")
    release = commands.add_parser(
        "release", parents=[common], help="publish and mail a release held after a missed embargo"
    )
    release.add_argument("release_id", metavar="ID", help="the held release's id (see `announce status`)")
    cli_mail.add_parsers(commands, common)
    cli_subscribers.add_parser(commands, common)
    commands.add_parser("migrate", parents=[common], help="create or upgrade the database schema")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(
        args.config,
        announcements_dir=args.announcements,
        http_host=getattr(args, "host", None),
        http_port=getattr(args, "port", None),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `announce` and `python -m service`; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
        configure_logging(settings.log_level, settings.log_format)
        if args.command == "check":
            return check(settings, args.paths, sys.stdout)
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            return runner.run(_COMMANDS[args.command](settings, args))
    except ServiceError as exc:
        print(f"announce: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


# ---- check -----------------------------------------------------------------------------------


def _candidates(
    paths: Sequence[Path], default: Path, languages: Collection[str]
) -> list[tuple[Path, Path, tuple[str, ...]]]:
    """(folder, file, companions): files named directly are checked whatever their folder."""
    found: list[tuple[Path, Path, tuple[str, ...]]] = []
    for path in paths or [default]:
        if path.is_dir():
            found += [(path, path / f.source, f.companions) for f in list_release_files(path, languages)]
        else:
            found.append((path.parent, path, companions_of(path, languages)))
    return found


def check(settings: Settings, paths: Sequence[Path], out: TextIO) -> int:
    """`announce check`: print OK and what was understood, or the reason, per file; 1 if any is bad."""
    options = IngestOptions.from_settings(settings)
    seen: dict[str, Path] = {}
    bad = 0
    files = _candidates(paths, settings.announcements_dir, options.languages)
    for folder, file, companions in files:
        try:
            if not file.is_file():
                raise AnnouncementError(file, "no such file")
            ann = read_release(folder, file, file.read_bytes(), options, companions)
            if ann.id in seen:
                raise AnnouncementError(
                    file,
                    f"id {ann.id!r} is already used by {seen[ann.id]}",
                    hint="give one file a different 'id:'",
                )
            seen[ann.id] = file
        except AnnouncementError as exc:
            bad += 1
            where = f"{file}:{exc.line}" if exc.line else str(file)
            print(f"ERROR {where}: {exc.reason}", file=out)
            if exc.hint:
                print(f"      how to fix: {exc.hint}", file=out)
            continue
        print(f"OK    {file}", file=out)
        print(_summary(ann, settings), file=out)
    print(f"{len(files)} file(s) checked: {len(files) - bad} ok, {bad} with errors", file=out)
    return 1 if bad else 0


def _summary(ann: Announcement, settings: Settings) -> str:
    local = ann.date.astimezone(settings.tz)
    lines = [
        f"id={ann.id}",
        f"title={ann.title!r}",
        f"date={local.isoformat()}",
        f"lang={ann.lang}",
        f"topics={','.join(ann.topics) or '-'}",
    ]
    if ann.publish_at:
        lines.append(f"embargo until {ann.publish_at.astimezone(settings.tz).isoformat()}")
    if ann.attachments:
        lines.append("attachments=" + ",".join(a.name for a in ann.attachments))
    if ann.draft:
        lines.append("draft (not published)")
    if ann.source.lower().endswith(".txt"):
        # What the plain-text reader understood, so the operator can check it before it goes out.
        dateline, sections = outline(ann.body_html)
        lines.append(f"dateline={dateline!r}" if dateline else "dateline=-")
        lines.append(f"lead={ann.summary[:80]!r}")
        lines.append("sections=" + (",".join(repr(s) for s in sections) or "-"))
    return "      " + "  ".join(lines)


# ---- commands that use the database ----------------------------------------------------------


async def _run(settings: Settings, _: argparse.Namespace) -> int:
    await serve(settings)
    return 0


async def _migrate(settings: Settings, _: argparse.Namespace) -> int:
    parts = build(settings)
    try:
        await parts.database.migrate()
    finally:
        await parts.close()
    print("database schema is up to date")
    return 0


async def _build(settings: Settings, args: argparse.Namespace) -> int:

    parts = build(settings.model_copy(update={"settle_seconds": 0.0}))
    try:
        await parts.database.migrate()
        report = await jobs.scan(parts.jobs)
        for problem in report.problems:
            line = f":{problem.line}" if problem.line else ""
            print(f"skipped {problem.source}{line}: {problem.reason}", file=sys.stderr)
        written = await Exporter(parts.views, settings.announcements_dir, args.out).run()
    finally:
        await parts.close()
    print(f"wrote {len(written)} files to {args.out}")
    return 0


async def _status(settings: Settings, _: argparse.Namespace) -> int:
    parts = build(settings)
    try:
        await parts.database.migrate()
        counts = await parts.releases.counts()
        last = await parts.sources.last_scan()
        problems = await parts.sources.problems()
        held = await parts.releases.held()
        cluster = parts.jobs.cluster
        alive = datetime.now(UTC) - timedelta(seconds=3 * settings.heartbeat_seconds)
        nodes = await cluster.nodes(alive) if cluster is not None else []
        audience = await parts.subscribers.counts()
        deliveries = await parts.ledger.progress()
    finally:
        await parts.close()
    print("releases: " + ", ".join(f"{state.value} {n}" for state, n in counts.items()))
    if last is None:
        print("last scan: never")
    else:
        print(
            f"last scan: {last.at.astimezone(settings.tz).isoformat(timespec='seconds')} "
            f"({last.files} files, {last.problems} refused, {last.seconds:.3f} s)"
        )
    for problem in problems:
        line = f":{problem.line}" if problem.line else ""
        print(f"refused: {problem.source}{line}: {problem.reason}")
    for release_id, publish_at, held_at in held:
        print(
            f"held: {release_id}: embargo {publish_at.astimezone(settings.tz).isoformat(timespec='minutes')} "
            f"missed (held {held_at.astimezone(settings.tz).isoformat(timespec='minutes')}); "
            f"publish it with: announce release {release_id}"
        )
    print(f"nodes: {len(nodes)} running")
    for node in nodes:
        since, seen = (
            t.astimezone(settings.tz).isoformat(timespec="seconds") for t in (node.started_at, node.seen_at)
        )
        print(f"  {node.name}: up since {since}, seen {seen}: {node.activity}")
    print("subscribers: " + ", ".join(f"{state.value} {n}" for state, n in audience.items()))
    cli_mail.print_delivery_status(deliveries)
    return 0


async def _release(settings: Settings, args: argparse.Namespace) -> int:
    parts = build(settings)
    try:
        await parts.database.migrate()
        release = await jobs.release_held(parts.jobs, args.release_id)
        held = [release_id for release_id, _, _ in await parts.releases.held()]
    finally:
        await parts.close()
    if release is None:
        waiting = ", ".join(held) or "none"
        print(f"announce: {args.release_id!r} is not a held release (held: {waiting})", file=sys.stderr)
        return 1
    print(f"published {release.id}; its bulletins are queued for the running service to send")
    return 0


_COMMANDS = {
    "run": _run, "build": _build, "status": _status, "migrate": _migrate, "release": _release,
    "preview": cli_mail.run, "send": cli_mail.run, "subscribers": cli_subscribers.run,
}  # fmt: skip

"""`announce preview` and `announce send`: look at a bulletin before it goes out, and send mail now."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from service.addresses import InvalidAddress, normalise_address
from service.config import Settings
from service.errors import AnnouncementError, ServiceError
from service.files import write_atomic
from service.ingest.options import IngestOptions
from service.ingest.reader import read_release
from service.models import DeliveryState, Outcome, Release, ReleaseState
from service.runtime import Components, build

PREVIEW_ADDRESS = "subscriber@example.org"


def add_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Register `preview` and `send`."""
    preview = commands.add_parser("preview", parents=[common], help="render a release's bulletin to files")
    preview.add_argument("file", type=Path, metavar="FILE", help="a release file (need not be published)")
    preview.add_argument(
        "--out", type=Path, metavar="DIR", help="output folder (default: <data_dir>/preview)"
    )
    send = commands.add_parser("send", parents=[common], help="send queued mail now, or one test bulletin")
    send.add_argument("--test-to", metavar="ADDRESS", help="send FILE's bulletin to this address only")
    send.add_argument("file", type=Path, nargs="?", metavar="FILE", help="release file for --test-to")
    send.add_argument("--wait", action="store_true", help="show progress until nothing is left to send")


def _release_from_file(settings: Settings, file: Path) -> Release:
    options = IngestOptions.from_settings(settings)
    try:
        ann = read_release(file.parent, file, file.read_bytes(), options)
    except OSError as exc:
        raise AnnouncementError(file, f"cannot read: {exc.strerror}") from None
    return Release(ann, guid=f"preview:{ann.id}", version=1, state=ReleaseState.PUBLISHED, content_hash="",
                   updated=ann.date, published_at=ann.date)  # fmt: skip


async def preview(parts: Components, args: argparse.Namespace) -> int:
    """Write <id>.eml, <id>.html and <id>.txt for a release file and print their paths."""
    release = _release_from_file(parts.settings, args.file)
    envelope = await parts.dispatcher.composer.single(release, PREVIEW_ADDRESS, datetime.now(UTC))
    out: Path = args.out or parts.settings.data_dir / "preview"
    message = message_from_bytes(envelope.data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    paths = {"eml": envelope.data}
    for suffix, subtype in (("html", "html"), ("txt", "plain")):
        part = message.get_body((subtype,))
        if part is not None:
            paths[suffix] = part.get_content().encode()
    for suffix, data in paths.items():
        target = out / f"{release.id}.{suffix}"
        write_atomic(target, data)
        print(target)
    return 0


async def send(parts: Components, args: argparse.Namespace) -> int:
    """Either one test bulletin (no ledger), or drain the ledger now."""
    if args.test_to:
        return await _send_test(parts, args)
    if args.file:
        raise ServiceError("FILE is only used with --test-to")
    if args.wait:
        return await _drain_with_progress(parts)
    handled = await parts.dispatcher.drain()
    print(f"{handled} deliveries handled")
    return 0


async def _send_test(parts: Components, args: argparse.Namespace) -> int:
    if args.file is None:
        raise ServiceError("--test-to needs a release FILE")
    try:
        address = normalise_address(args.test_to)
    except InvalidAddress as exc:
        raise ServiceError(f"--test-to: {exc}") from None
    release = _release_from_file(parts.settings, args.file)
    envelope = await parts.dispatcher.composer.single(release, address, datetime.now(UTC))
    result = await parts.mailer.send(envelope)
    print(f"{result.outcome.value}: {result.reply}")
    return 0 if result.outcome is Outcome.SENT else 1


async def _drain_with_progress(parts: Components) -> int:
    def totals(table: dict[str, dict[DeliveryState, int]]) -> tuple[int, int]:
        done = sum(n for states in table.values() for s, n in states.items() if s not in _OPEN)
        return done, sum(sum(states.values()) for states in table.values())

    progress = Progress(
        TextColumn("[bold]delivering"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        disable=not sys.stdout.isatty(),
    )  # fmt: skip
    with progress:
        task = progress.add_task("delivering")
        while True:
            handled = await parts.dispatcher.drain_once()
            done, total = totals(await parts.ledger.progress())
            progress.update(task, completed=done, total=total)
            if handled == 0:
                break  # nothing due now; rows waiting for a retry show as "retry" below
    print_delivery_status(await parts.ledger.progress())
    return 0


_OPEN = (DeliveryState.QUEUED, DeliveryState.RETRY)


def print_delivery_status(table: dict[str, dict[DeliveryState, int]]) -> None:
    """Per release: queued / sent / retrying / failed / unknown / skipped."""
    if not table:
        print("deliveries: none yet")
        return
    print("deliveries:")
    for name, states in table.items():
        print(f"  {name}: " + ", ".join(f"{state.value} {n}" for state, n in states.items()))


async def run(settings: Settings, args: argparse.Namespace) -> int:
    """Dispatch `preview` or `send`."""
    parts = build(settings)
    try:
        await parts.database.migrate()
        return await (preview if args.command == "preview" else send)(parts, args)
    finally:
        await parts.close()

"""`announce subscribers`: add, remove, list, import and export email subscribers from the command line.

Every door follows the rules of service.audience: double opt-in unless the operator asserts, with a
recorded source, that consent was collected elsewhere; an unsubscribed or bounced address is never
brought back. Files are streamed both ways, so the size of the list does not matter.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import re
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, TextIO

from rich import box
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from service.addresses import InvalidAddress, normalise_address
from service.audience import Preferences, Requested
from service.config import Settings
from service.models import Consent, Frequency, Subscriber, SubscriberState
from service.render.environment import LANGUAGES
from service.runtime import Components, build

ADD_SOURCE = "announce subscribers add"
EXPORT_COLUMNS = (
    "email", "state", "topics", "lang", "frequency", "consent_method", "consent_source",
    "consent_at", "confirmed_at", "unsubscribed_at", "bounced_at",
)  # fmt: skip
IMPORT_COLUMNS = ("email", "topics", "lang", "frequency", "state")
PROGRESS_MIN_BYTES = 64 * 1024  # smaller files are done before a bar would be worth drawing
MAX_LINE_BYTES = 64 * 1024  # a longer CSV line is refused without being held in memory
LIST_BATCH = 500  # rows per rendered table: `list` never holds more than this
PAGE = 1000  # subscribers read from the database at a time

_SUPPRESSED = (SubscriberState.UNSUBSCRIBED, SubscriberState.BOUNCED)
# The same rule as release topics (service.ingest.frontmatter), so a topic can match a release's.
_TOPIC = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$")
_LANG = re.compile(r"^[a-z]{2,3}(?:-[a-z0-9]{2,8})*$")
_TOPIC_SEPARATORS = re.compile(r"[;,\s]+")
_BOM = b"\xef\xbb\xbf"


class _Refused(ValueError):
    """A value in a row or an option cannot be used; the message says why."""


# ---- the parser --------------------------------------------------------------------------------


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Add `announce subscribers SUBCOMMAND` to the `announce` parser."""
    parser = commands.add_parser(
        "subscribers",
        help="add, remove, list, import and export email subscribers",
        description="Manage email subscribers: double opt-in by default, suppression always respected.",
    )
    sub = parser.add_subparsers(dest="subscribers_command", required=True, metavar="SUBCOMMAND")

    add = sub.add_parser(
        "add",
        parents=[common],
        help="ask an address to subscribe (a confirmation mail), or add it with --confirmed",
    )
    add.add_argument("address", metavar="ADDRESS")
    _preference_options(add)
    _consent_options(add, "the operator vouches that this person agreed elsewhere")

    remove = sub.add_parser("remove", parents=[common], help="unsubscribe an address, or erase it")
    remove.add_argument("address", metavar="ADDRESS")
    remove.add_argument(
        "--erase",
        action="store_true",
        help="delete everything about the address instead of keeping it as unsubscribed "
        "(right to erasure; it could then be added or imported again)",
    )

    listing = sub.add_parser("list", parents=[common], help="a table of subscribers and counts per state")
    _state_option(listing)

    load = sub.add_parser("import", parents=[common], help="add the addresses of a CSV file")
    load.add_argument(
        "file", type=Path, metavar="FILE.csv", help="CSV with a header: email[,topics,lang,frequency]"
    )
    _consent_options(load, "the operator vouches that everyone in the file agreed elsewhere")
    load.add_argument("--dry-run", action="store_true", help="check the file and report; change nothing")
    load.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    export = sub.add_parser("export", parents=[common], help="write the subscribers as CSV")
    _state_option(export)
    export.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="write to FILE (atomically); default: standard output",
    )


def _preference_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--topics", type=_topics_option, default=(), metavar="A,B", help="topics to receive (default: all)"
    )
    parser.add_argument(
        "--lang",
        type=_lang_option,
        metavar="LANG",
        help=f"language of the mail ({', '.join(LANGUAGES)}; default: the site's default_language)",
    )
    parser.add_argument(
        "--frequency",
        choices=[f.value for f in Frequency],
        default=Frequency.IMMEDIATE.value,
        help="immediate (default), daily or weekly",
    )


def _consent_options(parser: argparse.ArgumentParser, vouch: str) -> None:
    parser.add_argument("--confirmed", action="store_true", help=f"no confirmation mail: {vouch}")
    parser.add_argument(
        "--source",
        metavar="TEXT",
        help="with --confirmed, required: where and how consent was collected (kept as the record)",
    )


def _state_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state", choices=[s.value for s in SubscriberState], help="only this state")


def _topics_option(text: str) -> tuple[str, ...]:
    try:
        return parse_topics(text)
    except _Refused as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _lang_option(text: str) -> str:
    try:
        return parse_lang(text)
    except _Refused as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# ---- values ------------------------------------------------------------------------------------


def parse_topics(text: str) -> tuple[str, ...]:
    """Topic slugs separated by ';', ',' or spaces; lowercased, duplicates dropped. Empty: every topic."""
    topics = tuple(dict.fromkeys(t.lower() for t in _TOPIC_SEPARATORS.split(text.strip()) if t))
    for topic in topics:
        if not _TOPIC.fullmatch(topic):
            raise _Refused(f"{topic[:60]!r} is not a topic (lowercase letters, digits, '-' and '_')")
    return topics


def parse_lang(text: str) -> str:
    """A language we have mail phrases for, as its primary subtag: 'fr-FR' -> 'fr'."""
    tag = text.strip().lower().replace("_", "-")
    primary = tag.split("-")[0]
    if not _LANG.fullmatch(tag) or primary not in LANGUAGES:
        raise _Refused(f"language {text.strip()[:40]!r} is not one of {', '.join(LANGUAGES)}")
    return primary


def parse_frequency(text: str) -> Frequency:
    """immediate, daily or weekly (any case)."""
    try:
        return Frequency(text.strip().lower())
    except ValueError:
        raise _Refused(
            f"frequency {text.strip()[:40]!r} is not one of {', '.join(f.value for f in Frequency)}"
        ) from None


def default_lang(settings: Settings) -> str:
    """The site's default language if we have mail phrases for it, else English."""
    try:
        return parse_lang(settings.default_language)
    except _Refused:
        return "en"


def _address(text: str) -> str:
    try:
        return normalise_address(text)
    except InvalidAddress as exc:
        raise _Refused(f"invalid address {text.strip()[:80]!r}: {exc}") from None


def _when(moment: datetime | None) -> str:
    return "" if moment is None else moment.isoformat()


def _local(moment: datetime | None, settings: Settings) -> str:
    return "?" if moment is None else moment.astimezone(settings.tz).isoformat(sep=" ", timespec="seconds")


def _suppressed_since(subscriber: Subscriber, settings: Settings) -> str:
    moment = subscriber.unsubscribed_at or subscriber.bounced_at
    return f"{subscriber.state.value} since {_local(moment, settings)}"


def _error(message: str) -> None:
    print(f"announce: {message}", file=sys.stderr)


# ---- dispatch ----------------------------------------------------------------------------------


async def run(settings: Settings, args: argparse.Namespace) -> int:
    """`announce subscribers ...`: 0 done, 1 some addresses or rows refused, 2 usage or file errors."""
    command = args.subscribers_command
    problem = _usage_problem(args)
    if problem:
        print(f"announce subscribers {command}: error: {problem}", file=sys.stderr)
        return 2
    try:
        opened = _open_input(args)
    except _Refused as exc:
        _error(str(exc))
        return 2
    with opened if opened is not None else contextlib.nullcontext():
        parts = build(settings)
        try:
            await parts.database.migrate()
            return await _COMMANDS[command](parts, args, opened)
        except BrokenPipeError:  # `announce subscribers export | head`: the reader has had enough
            _silence_stdout()
            return 1
        finally:
            await parts.close()


def _silence_stdout() -> None:
    # Python would otherwise complain again when it flushes standard output at exit.
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _open_input(args: argparse.Namespace) -> BinaryIO | None:
    """Before touching the database: open the file to import, check where an export goes."""
    if args.subscribers_command == "import":
        try:
            return args.file.open("rb")  # type: ignore[no-any-return]
        except OSError as exc:
            raise _Refused(f"cannot read {args.file}: {exc.strerror or exc}") from None
    output = getattr(args, "output", None)
    if output is not None and str(output) != "-" and (output.is_dir() or not output.parent.is_dir()):
        raise _Refused(f"cannot write {output}: not a file in an existing folder")
    return None


def _usage_problem(args: argparse.Namespace) -> str | None:
    if args.subscribers_command not in ("add", "import"):
        return None
    source = args.source
    if args.confirmed and not (source and source.strip()):
        return "--confirmed needs --source TEXT: where and how these people gave their consent"
    if source is not None and not args.confirmed:
        return "--source goes with --confirmed (a confirmation request records its own source)"
    return None


# ---- add and remove ----------------------------------------------------------------------------


async def _add(parts: Components, args: argparse.Namespace, _: BinaryIO | None) -> int:
    try:
        email = _address(args.address)
    except _Refused as exc:
        _error(str(exc))
        return 1
    current = await parts.subscribers.find(email)
    if current is not None and current.state in _SUPPRESSED:
        _error(
            f"{email} is {_suppressed_since(current, parts.settings)}: not subscribed again "
            "(only its owner can subscribe anew, and confirm)"
        )
        return 1
    prefs = Preferences(args.topics, args.lang or default_lang(parts.settings), Frequency(args.frequency))
    now = parts.audience.clock.now()
    if args.confirmed:
        consent = Consent("cli", args.source.strip(), now)
        subscriber, added = await parts.audience.add_confirmed(email, prefs, consent)
        if subscriber.state in _SUPPRESSED:  # suppressed between our look and the write
            _error(f"{email} is {_suppressed_since(subscriber, parts.settings)}: not subscribed again")
            return 1
        if not added:
            since = _local(subscriber.confirmed_at, parts.settings)
            print(f"{email} is already subscribed (confirmed {since}): nothing changed")
        elif current is not None:
            print(f"{email} was waiting for confirmation: now confirmed (consent: {consent.source})")
            mine = (subscriber.topics, subscriber.lang, subscriber.frequency)
            if mine != (tuple(sorted(prefs.topics)), prefs.lang, prefs.frequency):
                print(
                    f"note: {email} keeps the preferences it asked for (topics: "
                    f"{' '.join(subscriber.topics) or 'all'}, lang {subscriber.lang}, "
                    f"{subscriber.frequency.value}), not the ones given here"
                )
        else:
            print(f"{email} added as confirmed (consent: {consent.source})")
        return 0
    result = await parts.audience.subscribe(email, prefs, Consent("cli", ADD_SOURCE, now))
    mail = "a confirmation mail is queued"
    if not result.send_confirmation:
        mail = (
            "no new confirmation mail: one was sent less than "
            f"{parts.settings.confirmation_window_minutes:g} minutes ago"
        )
    if result.outcome is Requested.NEW:
        print(f"{email} asked to confirm: {mail}; nothing else is sent until they do")
    elif result.outcome is Requested.PENDING:
        print(f"{email} was already waiting for confirmation: preferences updated, {mail}")
    elif result.outcome is Requested.CONFIRMED:
        since = _local(result.subscriber.confirmed_at, parts.settings)
        print(f"{email} is already subscribed (confirmed {since}): nothing changed")
    else:  # RENEWED: it was suppressed between our look and the write; it is pending, not confirmed
        _error(f"{email} was unsubscribed meanwhile; it is pending again and only its owner can confirm")
        return 1
    return 0


async def _remove(parts: Components, args: argparse.Namespace, _: BinaryIO | None) -> int:
    try:
        email = _address(args.address)
    except _Refused as exc:
        _error(str(exc))
        return 1
    if args.erase:
        if not await parts.subscribers.erase(email):
            _error(f"{email} is not in the list: nothing to erase")
            return 1
        print(f"{email} erased, with its consent record and its deliveries")
        print(
            f"warning: nothing about {email} is kept, not even that it unsubscribed: an import or "
            "`announce subscribers add` could add it again",
            file=sys.stderr,
        )
        return 0
    current = await parts.subscribers.find(email)
    if current is None:
        _error(f"{email} is not in the list: nothing to unsubscribe")
        return 1
    if current.state in _SUPPRESSED:
        print(f"{email} is already {_suppressed_since(current, parts.settings)}: nothing changed")
        return 0
    await parts.subscribers.unsubscribe(current.id, parts.audience.clock.now())
    print(f"{email} unsubscribed: never mailed again (kept as a record so it cannot be re-added)")
    return 0


# ---- list --------------------------------------------------------------------------------------

_LIST_HEADERS = ("address", "state", "frequency", "lang", "topics", "consent")
_NO_WRAP = ("state", "frequency", "lang")


def _cells(s: Subscriber, settings: Settings) -> tuple[str, ...]:
    consented = s.consent.at.astimezone(settings.tz).strftime("%Y-%m-%d")
    return (
        s.email,
        s.state.value,
        s.frequency.value,
        s.lang,
        " ".join(s.topics) or "(all)",
        f"{s.consent.method} {consented}: {s.consent.source}",
    )


def _table(rows: list[tuple[str, ...]], widths: list[int], header: bool) -> Table:
    # Fixed widths (taken from the first batch) keep the columns of every batch aligned.
    table = Table(box=box.SIMPLE_HEAD, show_header=header, show_edge=False, pad_edge=False)
    for name, width in zip(_LIST_HEADERS, widths, strict=True):
        table.add_column(name, width=width, no_wrap=name in _NO_WRAP, overflow="fold")
    for cells in rows:
        table.add_row(*(Text(c) for c in cells))  # Text: a '[' in a source is not markup
    return table


def _fit(widths: list[int], available: int) -> None:
    """Narrow the columns that may wrap (address, topics, consent), widest first, to fit the terminal."""
    wrapping = [i for i, name in enumerate(_LIST_HEADERS) if name not in _NO_WRAP]
    excess = sum(widths) - available
    while excess > 0:
        widest = max(wrapping, key=lambda i: widths[i])
        if widths[widest] <= 8:
            return
        widths[widest] -= 1
        excess -= 1


async def _list(parts: Components, args: argparse.Namespace, _: BinaryIO | None) -> int:
    state = SubscriberState(args.state) if args.state else None
    console: Console | None = None
    widths: list[int] = []
    shown = 0
    batch: list[tuple[str, ...]] = []

    def flush() -> None:
        nonlocal console, shown, batch
        if console is None:
            widths.extend(max(len(c) for c in column) for column in zip(_LIST_HEADERS, *batch, strict=True))
            console = Console(highlight=False)
            if console.is_terminal:
                _fit(widths, console.width - 3 * (len(widths) - 1))
            else:  # a pipe or a file: one line per subscriber, nothing folded
                console = Console(highlight=False, width=max(console.width, sum(widths) + 3 * len(widths)))
        console.print(_table(batch, widths, header=shown == 0))
        shown += len(batch)
        batch = []

    async for subscriber in parts.subscribers.all(state, page=PAGE):
        batch.append(_cells(subscriber, parts.settings))
        if len(batch) == LIST_BATCH:
            flush()
    if batch:
        flush()
    counts = await parts.subscribers.counts()
    which = f"{state.value} " if state else ""
    print(f"{shown} {which}subscriber(s) listed")
    print(
        "subscribers: "
        + ", ".join(f"{s.value} {n}" for s, n in counts.items())
        + f" ({sum(counts.values())} in all)"
    )
    return 0


# ---- import ------------------------------------------------------------------------------------


class _Lines:
    """A binary file as decoded text lines for csv.reader, counting bytes; bad lines are remembered.

    A line that is not UTF-8, or longer than MAX_LINE_BYTES (skipped without being kept), is
    recorded by line number so the row it belongs to is reported; the rest of the file goes on.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.bytes_read = 0
        self.line = 0
        self.problems: dict[int, str] = {}

    def __iter__(self) -> Iterator[str]:
        while chunk := self._raw.readline(MAX_LINE_BYTES):
            self.bytes_read += len(chunk)
            self.line += 1
            if self.line == 1 and chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]
            if len(chunk) >= MAX_LINE_BYTES and not chunk.endswith(b"\n"):
                while (rest := self._raw.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                    self.bytes_read += len(rest)
                self.bytes_read += len(rest)
                self.problems[self.line] = f"line longer than {MAX_LINE_BYTES} bytes"
                yield "\n"
                continue
            try:
                yield chunk.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.problems[self.line] = f"not UTF-8 (byte {exc.start + 1} of the line)"
                yield chunk.decode("utf-8", "replace")

    def problem(self, first: int, last: int) -> tuple[int, str] | None:
        """The first problem on lines first..last, if any; all of them are forgotten once asked."""
        found = [(n, self.problems.pop(n)) for n in range(first, last + 1) if n in self.problems]
        return found[0] if found else None


def _records(lines: _Lines) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """(first line, fields, None) for each CSV record, or (first line, None, why it cannot be read)."""
    reader = csv.reader(lines, strict=True)
    last = 0
    while True:
        fields: list[str] | None
        try:
            fields, error = next(reader), None
        except StopIteration:
            return
        except csv.Error as exc:
            fields, error = None, f"not valid CSV: {exc}"
        first, last = last + 1, reader.line_num
        bad = lines.problem(first, last)
        if bad is not None:
            fields, error = None, bad[1] if bad[0] == first else f"line {bad[0]}: {bad[1]}"
        if error is not None and last > first:
            error += f" (the record runs from line {first} to {last}: a quote left open?)"
        yield first, fields, error


@dataclass
class _Row:
    line: int
    email: str
    prefs: Preferences
    state: SubscriberState | None  # from a `state` column (an export), if any


@dataclass
class _Tally:
    added: int = 0
    confirmed: int = 0  # were pending, now confirmed (--confirmed)
    present: int = 0
    suppressed: int = 0
    invalid: int = 0
    duplicates: int = 0
    seen: dict[str, int] = field(default_factory=dict)  # address -> line of its first row

    def summary(self, name: str, dry_run: bool, confirmed: bool) -> str:
        added = f"{self.added} added" + (" as confirmed" if confirmed else " (confirmation mail queued)")
        if self.confirmed:
            added += f", {self.confirmed} pending now confirmed"
        text = (
            f"{added}, {self.present} already present, {self.suppressed} suppressed-skipped, "
            f"{self.invalid} invalid, {self.duplicates} duplicate(s)"
        )
        if dry_run:
            return f"{name}: dry run, nothing written: would have {text}"
        return f"{name}: {text}"


def _header(row: list[str]) -> dict[str, int]:
    names = [name.strip().lower() for name in row]
    columns: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in columns and name in IMPORT_COLUMNS:
            raise _Refused(f"the header names the column {name!r} twice")
        columns.setdefault(name, index)
    if "email" not in columns:
        raise _Refused(f"the header has no 'email' column (found: {', '.join(repr(n) for n in names)})")
    return columns


def _parse_row(fields: list[str], columns: dict[str, int], width: int, line: int, lang: str) -> _Row:
    if len(fields) > width and any(f.strip() for f in fields[width:]):
        raise _Refused(f"{len(fields)} fields but the header has {width}")

    def value(name: str) -> str:
        index = columns.get(name)
        return fields[index].strip() if index is not None and index < len(fields) else ""

    if not value("email"):
        raise _Refused("no address in the 'email' column")
    email = _address(value("email"))
    prefs = Preferences(
        parse_topics(value("topics")),
        parse_lang(value("lang")) if value("lang") else lang,
        parse_frequency(value("frequency")) if value("frequency") else Frequency.IMMEDIATE,
    )
    state = None
    if value("state"):
        try:
            state = SubscriberState(value("state").lower())
        except ValueError:
            raise _Refused(f"state {value('state')[:40]!r} is not a subscriber state") from None
    return _Row(line, email, prefs, state)


@contextlib.contextmanager
def _progress(total: int, label: str, quiet: bool) -> Iterator[Callable[[int], None]]:
    console = Console(stderr=True)
    if quiet or total < PROGRESS_MIN_BYTES or not console.is_terminal:
        yield lambda _done: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda done: progress.update(task, completed=done)


async def _import(parts: Components, args: argparse.Namespace, raw: BinaryIO | None) -> int:
    assert raw is not None
    path: Path = args.file
    name = str(path)
    lines = _Lines(raw)
    lang = default_lang(parts.settings)
    tally = _Tally()
    columns: dict[str, int] | None = None
    width = 0
    try:
        size = os.fstat(raw.fileno()).st_size
    except OSError:
        size = 0
    with _progress(size, path.name, args.quiet) as advance:
        for line, fields, error in _records(lines):
            advance(lines.bytes_read)
            blank = fields is not None and not any(f.strip() for f in fields)
            if columns is None:
                if fields is None:
                    _error(f"{name}:{line}: cannot read the header: {error}")
                    return 2
                if blank:
                    continue
                try:
                    columns = _header(fields)
                except _Refused as exc:
                    _error(f"{name}:{line}: {exc}")
                    return 2
                width = len(fields)
                unknown = sorted(set(columns) - set(EXPORT_COLUMNS))
                if unknown:
                    print(
                        f"{name}:{line}: warning: ignoring column(s) {', '.join(map(repr, unknown))} "
                        f"(known: {', '.join(IMPORT_COLUMNS)})",
                        file=sys.stderr,
                    )
                continue
            if blank:
                continue
            try:
                if fields is None:
                    raise _Refused(error or "unreadable")
                row = _parse_row(fields, columns, width, line, lang)
            except _Refused as exc:
                tally.invalid += 1
                print(f"{name}:{line}: {exc}", file=sys.stderr)
                continue
            await _import_row(parts, args, row, tally, name)
    if columns is None:
        _error(f"{name}: empty file: a header line naming at least the 'email' column is needed")
        return 2
    print(tally.summary(name, args.dry_run, args.confirmed))
    return 1 if tally.invalid else 0


async def _import_row(
    parts: Components, args: argparse.Namespace, row: _Row, tally: _Tally, name: str
) -> None:
    if row.email in tally.seen:
        tally.duplicates += 1
        print(
            f"{name}:{row.line}: {row.email} is a duplicate of line {tally.seen[row.email]}: skipped",
            file=sys.stderr,
        )
        return
    tally.seen[row.email] = row.line
    if row.state in _SUPPRESSED:  # an export from elsewhere says this person left: respect it
        tally.suppressed += 1
        return
    if args.confirmed and row.state is SubscriberState.PENDING:
        tally.invalid += 1
        print(
            f"{name}:{row.line}: {row.email} is pending in the file (never confirmed): not added as "
            "confirmed; import it without --confirmed to ask them",
            file=sys.stderr,
        )
        return
    now = parts.audience.clock.now()
    if args.confirmed and not args.dry_run:
        # add_confirmed never overrides an unsubscribe or a bounce, and confirms a pending address.
        subscriber, added = await parts.audience.add_confirmed(
            row.email, row.prefs, Consent("import", args.source.strip(), now)
        )
        if subscriber.state in _SUPPRESSED:
            tally.suppressed += 1
        elif not added:
            tally.present += 1
        elif subscriber.created_at == subscriber.confirmed_at:
            tally.added += 1
        else:
            tally.confirmed += 1
        return
    current = await parts.subscribers.find(row.email)
    if current is not None and current.state in _SUPPRESSED:
        tally.suppressed += 1  # a subscription request would bring it back: never from here
    elif current is not None and not (args.confirmed and current.state is SubscriberState.PENDING):
        tally.present += 1
    elif args.dry_run:
        if current is None:
            tally.added += 1
        else:
            tally.confirmed += 1
    else:
        result = await parts.audience.subscribe(row.email, row.prefs, Consent("import", Path(name).name, now))
        if result.outcome is Requested.NEW:
            tally.added += 1
        else:  # someone else added it between our look and the write
            tally.present += 1


# ---- export ------------------------------------------------------------------------------------


async def _write_csv(parts: Components, state: SubscriberState | None, out: TextIO) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    async for s in parts.subscribers.all(state, page=PAGE):
        writer.writerow(
            [
                s.email, s.state.value, ";".join(s.topics), s.lang, s.frequency.value,
                s.consent.method, s.consent.source, _when(s.consent.at),
                _when(s.confirmed_at), _when(s.unsubscribed_at), _when(s.bounced_at),
            ]
        )  # fmt: skip
        count += 1
    return count


async def _export(parts: Components, args: argparse.Namespace, _: BinaryIO | None) -> int:
    state = SubscriberState(args.state) if args.state else None
    target: Path | None = args.output
    if target is None or str(target) == "-":
        count = await _write_csv(parts, state, sys.stdout)
        sys.stdout.flush()
        print(f"exported {count} subscriber(s)", file=sys.stderr)
        return 0
    # Streamed to a private temporary file next to the target, then renamed over it: readers see the
    # old file or the complete new one. The file holds personal data: it stays readable by us only.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            count = await _write_csv(parts, state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        _discard(tmp)
        raise
    print(f"exported {count} subscriber(s) to {target}")
    return 0


def _discard(path: str) -> None:
    Path(path).unlink(missing_ok=True)


_Command = Callable[[Components, argparse.Namespace, BinaryIO | None], Awaitable[int]]
_COMMANDS: dict[str, _Command] = {
    "add": _add,
    "remove": _remove,
    "list": _list,
    "import": _import,
    "export": _export,
}

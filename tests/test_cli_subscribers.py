"""`announce subscribers`: add, remove, list, import and export, run in-process on SQLite."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from service import cli_subscribers
from service.audience import Preferences
from service.cli import main
from service.config import load_settings
from service.errors import StoreError
from service.models import Consent, Frequency, Subscriber, SubscriberState
from service.runtime import Components, build
from service.store.subscribers import Subscribers
from tests.conftest import write_config

T = TypeVar("T")
DATA = Path(__file__).parent / "data" / "subscribers"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "site")


@pytest.fixture(autouse=True)
def not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich sees no terminal whatever the environment says (FORCE_COLOR in CI): plain, unfolded output."""
    monkeypatch.setenv("TTY_COMPATIBLE", "0")


def db(config: Path, action: Callable[[Components], Awaitable[T]]) -> T:
    """Run `action` against the database of `config`."""

    async def go() -> T:
        parts = build(load_settings(config))
        await parts.database.migrate()
        try:
            return await action(parts)
        finally:
            await parts.close()

    return asyncio.run(go())


def find(config: Path, email: str) -> Subscriber | None:
    return db(config, lambda parts: parts.subscribers.find(email))


def queued(config: Path) -> int:
    """Mail waiting in the delivery ledger."""
    return db(config, lambda parts: parts.ledger.pending(datetime.now(UTC), True))


def counts(config: Path) -> dict[SubscriberState, int]:
    return db(config, lambda parts: parts.subscribers.counts())


def bounce(config: Path, email: str) -> None:
    async def action(parts: Components) -> None:
        found = await parts.subscribers.find(email)
        assert found is not None
        assert await parts.subscribers.bounce(found.id, datetime.now(UTC))

    db(config, action)


def subscribers(config: Path, *argv: str) -> int:
    return main(["subscribers", argv[0], "--config", str(config), *argv[1:]])


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# ---- add ---------------------------------------------------------------------------------------


def test_add_asks_for_confirmation_and_queues_one_mail(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert subscribers(config, "add", "Ada@Example.ORG", "--topics", "research,Awards") == 0
    assert "ada@example.org asked to confirm: a confirmation mail is queued" in capsys.readouterr().out
    found = find(config, "ada@example.org")
    assert found is not None
    assert found.state is SubscriberState.PENDING
    assert (found.consent.method, found.consent.source) == ("cli", "announce subscribers add")
    assert found.topics == ("awards", "research")
    assert (found.lang, found.frequency) == ("en", Frequency.IMMEDIATE)
    assert queued(config) == 1
    # Asking again within the window: still pending, no second mail.
    assert subscribers(config, "add", "ada@example.org") == 0
    assert "already waiting for confirmation" in capsys.readouterr().out
    assert queued(config) == 1


def test_add_confirmed_needs_a_source(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert subscribers(config, "add", "ada@example.org", "--confirmed") == 2
    assert "--confirmed needs --source" in capsys.readouterr().err
    assert subscribers(config, "add", "ada@example.org", "--confirmed", "--source", "  ") == 2
    assert subscribers(config, "add", "ada@example.org", "--source", "a note") == 2
    assert "--source goes with --confirmed" in capsys.readouterr().err
    assert find(config, "ada@example.org") is None


def test_add_confirmed_records_the_consent_and_sends_nothing(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--confirmed", "--source", "paper form, fair 2026", "--lang", "fr-FR", "--frequency", "daily"]
    assert subscribers(config, "add", "ada@example.org", "--topics", "research awards", *argv) == 0
    assert "ada@example.org added as confirmed" in capsys.readouterr().out
    found = find(config, "ada@example.org")
    assert found is not None
    assert found.state is SubscriberState.CONFIRMED
    assert (found.consent.method, found.consent.source) == ("cli", "paper form, fair 2026")
    assert (found.topics, found.lang, found.frequency) == (("awards", "research"), "fr", Frequency.DAILY)
    assert queued(config) == 0
    assert subscribers(config, "add", "ada@example.org") == 0
    assert "already subscribed" in capsys.readouterr().out


def test_add_confirmed_confirms_a_pending_address_and_keeps_its_own_preferences(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subscribers(config, "add", "ada@example.org", "--topics", "research")
    capsys.readouterr()
    assert (
        subscribers(config, "add", "ada@example.org", "--confirmed", "--source", "phone", "--lang", "fr") == 0
    )
    out = capsys.readouterr().out
    assert "ada@example.org was waiting for confirmation: now confirmed (consent: phone)" in out
    assert "note: ada@example.org keeps the preferences it asked for (topics: research, lang en" in out
    found = find(config, "ada@example.org")
    assert found is not None
    assert (found.state, found.topics, found.lang) == (SubscriberState.CONFIRMED, ("research",), "en")
    assert (found.consent.method, found.consent.source) == ("cli", "phone")


def test_add_refuses_bad_values(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert subscribers(config, "add", "not-an-address") == 1
    assert "invalid address 'not-an-address'" in capsys.readouterr().err
    for option, value in [("--topics", "Open Science!"), ("--lang", "de"), ("--frequency", "hourly")]:
        with pytest.raises(SystemExit) as exit_:
            subscribers(config, "add", "ada@example.org", option, value)
        assert exit_.value.code == 2
    assert "'de' is not one of en, fr" in capsys.readouterr().err
    assert counts(config)[SubscriberState.PENDING] == 0


@pytest.mark.parametrize("confirmed", [False, True])
def test_add_never_brings_back_an_unsubscribed_or_bounced_address(
    config: Path, capsys: pytest.CaptureFixture[str], confirmed: bool
) -> None:
    subscribers(config, "add", "left@example.org")
    subscribers(config, "remove", "left@example.org")
    subscribers(config, "add", "bounced@example.org")
    bounce(config, "bounced@example.org")
    before = queued(config)
    capsys.readouterr()
    extra = ["--confirmed", "--source", "they asked by phone"] if confirmed else []
    assert subscribers(config, "add", "left@example.org", *extra) == 1
    assert "left@example.org is unsubscribed since" in capsys.readouterr().err
    assert subscribers(config, "add", "BOUNCED@example.org", *extra) == 1
    assert "bounced@example.org is bounced since" in capsys.readouterr().err
    left, bounced = find(config, "left@example.org"), find(config, "bounced@example.org")
    assert left is not None
    assert bounced is not None
    assert (left.state, left.generation) == (SubscriberState.UNSUBSCRIBED, 1)
    assert (bounced.state, bounced.generation) == (SubscriberState.BOUNCED, 1)
    assert queued(config) == before


# ---- remove ------------------------------------------------------------------------------------


def test_remove_unsubscribes_and_keeps_the_record(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert subscribers(config, "remove", "nobody@example.org") == 1
    assert "nobody@example.org is not in the list" in capsys.readouterr().err
    subscribers(config, "add", "ada@example.org")
    assert subscribers(config, "remove", "Ada@example.org") == 0
    assert "ada@example.org unsubscribed" in capsys.readouterr().out
    found = find(config, "ada@example.org")
    assert found is not None
    assert found.state is SubscriberState.UNSUBSCRIBED
    assert found.unsubscribed_at is not None
    assert subscribers(config, "remove", "ada@example.org") == 0
    assert "already unsubscribed since" in capsys.readouterr().out


def test_remove_erase_deletes_everything_and_warns(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    subscribers(config, "add", "ada@example.org", "--topics", "research")
    assert queued(config) == 1
    capsys.readouterr()
    assert subscribers(config, "remove", "ada@example.org", "--erase") == 0
    captured = capsys.readouterr()
    assert "ada@example.org erased" in captured.out
    assert "could add it again" in captured.err
    assert find(config, "ada@example.org") is None
    assert queued(config) == 0  # its confirmation mail went with it
    assert subscribers(config, "remove", "ada@example.org", "--erase") == 1
    assert "nothing to erase" in capsys.readouterr().err
    # Erased means forgotten: it can be asked again.
    assert subscribers(config, "add", "ada@example.org") == 0


# ---- list --------------------------------------------------------------------------------------


def test_list_shows_a_table_and_the_counts(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    subscribers(config, "add", "pending@example.org", "--topics", "research")
    subscribers(config, "add", "ada@example.org", "--confirmed", "--source", "fair [2026]", "--lang", "fr")
    subscribers(config, "add", "left@example.org")
    subscribers(config, "remove", "left@example.org")
    capsys.readouterr()
    assert subscribers(config, "list") == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("address"))
    assert header.split() == ["address", "state", "frequency", "lang", "topics", "consent"]
    ada = next(line for line in lines if line.startswith("ada@example.org"))
    assert ada.split()[:5] == ["ada@example.org", "confirmed", "immediate", "fr", "(all)"]
    assert ada.rstrip().endswith(": fair [2026]")  # not taken for rich markup
    assert re.search(r"  cli \d{4}-\d\d-\d\d: fair \[2026\]$", ada.rstrip())
    assert any(line.startswith("pending@example.org") and "research" in line for line in lines)
    assert "3 subscriber(s) listed" in out
    assert "subscribers: pending 1, confirmed 1, unsubscribed 1, bounced 0 (3 in all)" in out

    assert subscribers(config, "list", "--state", "confirmed") == 0
    out = capsys.readouterr().out
    assert "ada@example.org" in out
    assert "pending@example.org" not in out
    assert "1 confirmed subscriber(s) listed" in out


def test_list_streams_in_batches_with_one_header(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (config.parent / "few.csv").write_text(
        "email\n" + "".join(f"user{i}@example.org\n" for i in range(7)), encoding="utf-8"
    )
    subscribers(config, "import", str(config.parent / "few.csv"))
    monkeypatch.setattr(cli_subscribers, "PAGE", 3)
    monkeypatch.setattr(cli_subscribers, "LIST_BATCH", 2)
    capsys.readouterr()
    assert subscribers(config, "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("address") for line in lines) == 1
    rows = [line for line in lines if line.startswith("user")]
    assert [r.split()[0] for r in rows] == [f"user{i}@example.org" for i in range(7)]
    assert len({r.index("pending") for r in rows}) == 1  # every batch has the same columns


# ---- import ------------------------------------------------------------------------------------


@pytest.mark.slow  # about 7 ms per imported row on SQLite (two store transactions): 14 s in all
def test_import_2000_rows_reports_bad_lines_and_imports_the_rest(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = ["email,topics,lang,frequency"]
    bad: dict[int, str] = {}
    for i in range(2000):
        line = len(lines) + 1
        if i % 400 == 17:
            lines.append(f"user{i}.example.org,,,")
            bad[line] = "invalid address"
        elif i % 400 == 101:
            lines.append(f"user{i}@example.org,,de,")
            bad[line] = "language 'de'"
        elif i % 400 == 202:
            lines.append(f"user{i}@example.org,,,hourly")
            bad[line] = "frequency 'hourly'"
        else:
            lines.append(f"user{i}@example.org,t{i % 7};all-news,{'fr' if i % 2 else 'en'},daily")
    path = tmp_path / "people.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    assert subscribers(config, "import", str(path), "--quiet") == 1
    captured = capsys.readouterr()
    errors = error_lines(captured.err)
    assert len(errors) == len(bad) == 15
    for message, (line, reason) in zip(errors, sorted(bad.items()), strict=True):
        assert message.startswith(f"{path}:{line}: ")
        assert reason in message
    assert f"{path}: 1985 added (confirmation mail queued), 0 already present" in captured.out
    assert ", 15 invalid, 0 duplicate(s)" in captured.out
    assert counts(config)[SubscriberState.PENDING] == 1985
    assert queued(config) == 1985
    found = find(config, "user1999@example.org")
    assert found is not None
    assert (found.consent.method, found.consent.source) == ("import", "people.csv")
    assert (found.topics, found.lang, found.frequency) == (("all-news", "t4"), "fr", Frequency.DAILY)


def test_import_reports_each_bad_row_by_line_and_goes_on(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes(
        b"email,topics,lang,frequency\n"  # 1
        b"good1@example.org,research,fr,weekly\n"  # 2
        b"no-at-sign,,,\n"  # 3
        b",research,,\n"  # 4: no address
        b"good2@example.org,Bad Topic!,,\n"  # 5
        b"caf\xe9@example.org,,,\n"  # 6: Latin-1, not UTF-8
        b'"x"y@example.org,,,\n'  # 7: not CSV
        b"good3@example.org,,,,surplus\n"  # 8: a field more than the header
        b"good4@example.org," + b"x" * (cli_subscribers.MAX_LINE_BYTES + 10) + b"\n"  # 9: too long
        b'"good5@example.org","multi\nline",,\n'  # 10-11: a quoted line break in topics
        b"good6@example.org,,EN,Daily\n"  # 12
    )
    assert subscribers(config, "import", str(path)) == 1
    captured = capsys.readouterr()
    errors = error_lines(captured.err)
    expected = [
        (3, "invalid address 'no-at-sign'"),
        (4, "no address"),
        (5, "'topic!' is not a topic"),
        (6, "not UTF-8"),
        (7, "not valid CSV"),
        (8, "5 fields but the header has 4"),
        (9, "line longer than"),
    ]
    assert len(errors) == len(expected)
    for message, (line, reason) in zip(errors, expected, strict=True):
        assert message.startswith(f"{path}:{line}: "), message
        assert reason in message, message
    assert "3 added (confirmation mail queued)" in captured.out
    assert "7 invalid" in captured.out
    good5, good6 = find(config, "good5@example.org"), find(config, "good6@example.org")
    assert good5 is not None
    assert good6 is not None
    assert good5.topics == ("line", "multi")
    assert (good6.lang, good6.frequency) == ("en", Frequency.DAILY)


def test_import_an_unclosed_quote_names_where_the_record_started(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "quote.csv"
    path.write_text('email\nfirst@example.org\n"open@example.org\nlost@example.org\n', encoding="utf-8")
    assert subscribers(config, "import", str(path)) == 1
    [error] = error_lines(capsys.readouterr().err)
    assert error.startswith(f"{path}:3: not valid CSV")
    assert "runs from line 3 to 4" in error
    assert find(config, "first@example.org") is not None


def test_import_handles_bom_crlf_empty_lines_and_duplicates(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = DATA / "bom-crlf-duplicates.csv"
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert b"\r\n" in raw
    assert subscribers(config, "import", str(path)) == 0  # duplicates are reported, not refused
    captured = capsys.readouterr()
    assert error_lines(captured.err) == [
        f"{path}:6: ada@example.org is a duplicate of line 2: skipped",
        f"{path}:8: grace@example.org is a duplicate of line 3: skipped",
    ]
    assert (
        f"{path}: 3 added (confirmation mail queued), 0 already present, 0 suppressed-skipped, "
        "0 invalid, 2 duplicate(s)" in captured.out
    )
    ada = find(config, "ada@example.org")
    assert ada is not None
    assert (ada.topics, ada.lang) == (("awards", "research"), "fr")  # the first row wins
    assert queued(config) == 3


def test_import_never_brings_back_suppressed_addresses(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subscribers(config, "add", "left@example.org")
    subscribers(config, "remove", "left@example.org")
    subscribers(config, "add", "bounced@example.org")
    bounce(config, "bounced@example.org")
    subscribers(config, "add", "here@example.org", "--confirmed", "--source", "form")
    before = queued(config)
    path = tmp_path / "list.csv"
    path.write_text("email\nleft@example.org\nbounced@example.org\nhere@example.org\nnew@example.org\n")
    for extra in ([], ["--confirmed", "--source", "old newsletter list, opt-in 2024"]):
        capsys.readouterr()
        assert subscribers(config, "import", str(path), *extra) == 0
        assert "1 already present, 2 suppressed-skipped, 0 invalid" in capsys.readouterr().out
    states = {e: find(config, e) for e in ("left@example.org", "bounced@example.org", "new@example.org")}
    assert {e: (s.state, s.generation) for e, s in states.items() if s} == {
        "left@example.org": (SubscriberState.UNSUBSCRIBED, 1),
        "bounced@example.org": (SubscriberState.BOUNCED, 1),
        # asked first, then vouched for by the second import: confirmed
        "new@example.org": (SubscriberState.CONFIRMED, 1),
    }
    assert queued(config) == before + 1  # only new@example.org's confirmation request


def test_import_confirmed_needs_a_source_and_records_it(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "list.csv"
    path.write_text("Email , Frequency\nada@example.org,weekly\nwaiting@example.org,\n")
    assert subscribers(config, "import", str(path), "--confirmed") == 2
    assert "--confirmed needs --source" in capsys.readouterr().err
    assert counts(config)[SubscriberState.CONFIRMED] == 0
    subscribers(config, "add", "waiting@example.org")
    capsys.readouterr()
    assert subscribers(config, "import", str(path), "--confirmed", "--source", "signed forms, box 3") == 0
    assert "1 added as confirmed, 1 pending now confirmed" in capsys.readouterr().out
    ada = find(config, "ada@example.org")
    assert ada is not None
    assert ada.state is SubscriberState.CONFIRMED
    assert (ada.consent.method, ada.consent.source) == ("import", "signed forms, box 3")
    assert ada.frequency is Frequency.WEEKLY
    assert queued(config) == 1  # waiting@example.org's own request, nothing for the import


def test_import_dry_run_writes_nothing(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subscribers(config, "add", "here@example.org")
    path = tmp_path / "list.csv"
    path.write_text("email\nhere@example.org\nnew@example.org\nbroken\n")
    capsys.readouterr()
    assert subscribers(config, "import", str(path), "--dry-run") == 1
    captured = capsys.readouterr()
    assert f"{path}:4: invalid address 'broken'" in captured.err
    assert "dry run, nothing written: would have 1 added" in captured.out
    assert "1 already present" in captured.out
    assert find(config, "new@example.org") is None
    assert queued(config) == 1


def test_import_refuses_unusable_files(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert subscribers(config, "import", str(tmp_path / "missing.csv")) == 2
    assert "cannot read" in capsys.readouterr().err
    empty = tmp_path / "empty.csv"
    empty.write_text("\n\n")
    assert subscribers(config, "import", str(empty)) == 2
    assert "empty file" in capsys.readouterr().err
    headless = tmp_path / "headless.csv"
    headless.write_text("ada@example.org,research\n")
    assert subscribers(config, "import", str(headless)) == 2
    assert f"{headless}:1: the header has no 'email' column" in capsys.readouterr().err
    extra = tmp_path / "extra.csv"
    extra.write_text("email,langauge\nada@example.org,fr\n")
    assert subscribers(config, "import", str(extra)) == 0
    assert "ignoring column(s) 'langauge'" in capsys.readouterr().err


def test_import_progress_bar_only_on_a_terminal_and_not_with_quiet(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "list.csv"
    path.write_text("email\n" + "".join(f"user{i}@example.org\n" for i in range(5)) + "broken\n")
    monkeypatch.setattr(cli_subscribers, "PROGRESS_MIN_BYTES", 10)
    assert subscribers(config, "import", str(path), "--dry-run") == 1
    err = capsys.readouterr().err
    assert error_lines(err) == [f"{path}:7: invalid address 'broken': An email address must have an @-sign."]
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    assert subscribers(config, "import", str(path), "--dry-run", "--quiet") == 1
    assert "\x1b[" not in capsys.readouterr().err
    assert subscribers(config, "import", str(path), "--dry-run") == 1
    err = capsys.readouterr().err
    assert "list.csv" in err
    assert "━" in err
    assert "invalid address 'broken'" in err  # row errors still show, above the bar


# ---- export ------------------------------------------------------------------------------------


def test_export_then_import_round_trips_preferences(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vouch = ["--confirmed", "--source", "fair 2026"]
    subscribers(config, "add", "ada@example.org", "--topics", "research,awards", "--lang", "fr", *vouch)
    subscribers(config, "add", "grace@example.org", "--frequency", "weekly", *vouch)
    subscribers(config, "add", "linus@example.org", "--topics", "open-science", "--frequency=daily", *vouch)
    subscribers(config, "add", "pending@example.org", "--topics", "x")
    subscribers(config, "add", "left@example.org", *vouch)
    subscribers(config, "remove", "left@example.org")
    exported = tmp_path / "confirmed.csv"
    assert subscribers(config, "export", "--state", "confirmed", "--output", str(exported)) == 0

    other = write_config(tmp_path / "other")
    capsys.readouterr()
    assert subscribers(other, "import", str(exported), "--confirmed", "--source", "migration") == 0
    assert "3 added as confirmed" in capsys.readouterr().out
    assert subscribers(other, "export") == 0
    again = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))

    def prefs(rows: list[dict[str, str]]) -> list[tuple[str, ...]]:
        return [(r["email"], r["state"], r["topics"], r["lang"], r["frequency"]) for r in rows]

    assert (
        prefs(again)
        == prefs(read_csv(exported))
        == [
            ("ada@example.org", "confirmed", "awards;research", "fr", "immediate"),
            ("grace@example.org", "confirmed", "", "en", "weekly"),
            ("linus@example.org", "confirmed", "open-science", "en", "daily"),
        ]
    )
    assert {r["consent_source"] for r in again} == {"migration"}

    # A full export carries its states: the unsubscribed row is skipped, the pending one refused
    # as confirmed (it never confirmed) but asked again without --confirmed.
    everything = tmp_path / "all.csv"
    assert subscribers(config, "export", "--output", str(everything)) == 0
    fresh = write_config(tmp_path / "fresh")
    capsys.readouterr()
    assert subscribers(fresh, "import", str(everything), "--confirmed", "--source", "migration") == 1
    captured = capsys.readouterr()
    assert "pending@example.org is pending in the file (never confirmed)" in captured.err
    assert "3 added as confirmed, 0 already present, 1 suppressed-skipped, 1 invalid" in captured.out
    assert find(fresh, "left@example.org") is None
    assert subscribers(fresh, "import", str(everything)) == 0
    assert "1 added (confirmation mail queued), 3 already present, 1 suppressed-skipped" in (
        capsys.readouterr().out
    )


def test_export_to_a_file_is_complete_private_and_atomic(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "list.csv"
    path.write_text("email,topics\n" + "".join(f"user{i}@example.org,t{i}\n" for i in range(10)))
    subscribers(config, "import", str(path))
    monkeypatch.setattr(cli_subscribers, "PAGE", 3)  # several pages
    out = tmp_path / "out" / "subscribers.csv"
    out.parent.mkdir()
    out.write_text("old contents\n")
    assert subscribers(config, "export", "-o", str(out)) == 0
    assert f"exported 10 subscriber(s) to {out}" in capsys.readouterr().out
    with out.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    assert header == list(cli_subscribers.EXPORT_COLUMNS)
    rows = read_csv(out)
    assert [(r["email"], r["topics"], r["state"]) for r in rows] == [
        (f"user{i}@example.org", f"t{i}", "pending") for i in range(10)
    ]
    assert all(datetime.fromisoformat(r["consent_at"]).tzinfo is not None for r in rows)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # personal data
    assert sorted(p.name for p in out.parent.iterdir()) == ["subscribers.csv"]

    # A failure half-way leaves the previous file whole and no temporary file behind.
    original = Subscribers.all

    async def failing(self: Subscribers, *args: Any, **kwargs: Any) -> AsyncIterator[Subscriber]:
        count = 0
        async for subscriber in original(self, *args, **kwargs):
            yield subscriber
            count += 1
            if count == 4:
                raise StoreError("database unreachable: connection lost")

    before = out.read_bytes()
    monkeypatch.setattr(Subscribers, "all", failing)
    assert subscribers(config, "export", "--output", str(out)) == 2
    assert "database unreachable" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["subscribers.csv"]


def test_export_refuses_a_missing_folder(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert subscribers(config, "export", "--output", str(tmp_path / "nowhere" / "x.csv")) == 2
    assert "not a file in an existing folder" in capsys.readouterr().err


# ---- regressions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["subscribe", "add_confirmed"])
def test_simultaneous_requests_for_one_new_address_do_not_fail(config: Path, operation: str) -> None:
    async def race(parts: Components) -> None:
        consent = Consent("web", "https://press.example.org/subscribe", datetime.now(UTC))
        for n in range(3):
            act = getattr(parts.audience, operation)
            calls = [act(f"ada{n}@example.org", Preferences(), consent) for _ in range(2)]
            for outcome in await asyncio.gather(*calls, return_exceptions=True):
                if isinstance(outcome, BaseException):
                    raise outcome

    db(config, race)
    assert (
        counts(config)[SubscriberState.PENDING if operation == "subscribe" else SubscriberState.CONFIRMED]
        == 3
    )

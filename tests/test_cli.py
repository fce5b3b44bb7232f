"""The `announce` command line, run in-process on SQLite and as `python -m service`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import httpx
import pytest

from service.cli import main
from service.config import load_settings
from service.runtime import build, make_app
from tests.conftest import REPO, Inbox, write_config

SAMPLE = REPO / "announcements" / "2020-02-12-carnot-label.md"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path)


@pytest.fixture
def inbox(tmp_path: Path) -> Inbox:
    return Inbox(tmp_path / "announcements")


def test_check_accepts_the_sample_and_shows_what_it_understood(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(SAMPLE)]) == 0
    out = capsys.readouterr().out
    assert f"OK    {SAMPLE}" in out
    assert "id=2020-02-12-carnot-label" in out
    assert "topics=research,partnerships" in out
    assert "1 file(s) checked: 1 ok, 0 with errors" in out


def test_check_reports_file_line_reason_and_fix(
    config: Path, inbox: Inbox, capsys: pytest.CaptureFixture[str]
) -> None:
    inbox.release("good.md")
    bad = inbox.write("bad.md", "---\ntitle: Fine\ndate: 2026-11-01\ntitel: typo\n---\nbody\n")
    assert main(["check", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert f"ERROR {bad}:4: unknown key 'titel'" in out
    assert "how to fix: did you mean 'title'?" in out
    assert "2 file(s) checked: 1 ok, 1 with errors" in out


def test_check_finds_duplicate_ids(inbox: Inbox, capsys: pytest.CaptureFixture[str]) -> None:
    inbox.release("a.md", id="same")
    inbox.release("b.md", id="same")
    assert main(["check", str(inbox.folder)]) == 1
    assert "id 'same' is already used by" in capsys.readouterr().out


def test_check_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tmp_path / "nope.md")]) == 1
    assert "no such file" in capsys.readouterr().out


def test_build_writes_the_site_atomically_and_prunes(
    config: Path, inbox: Inbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inbox.release("one.md", title="One", topics=["awards"])
    inbox.release("two.md", title="Two", date="2026-11-21")
    out = tmp_path / "site"
    assert main(["build", "--config", str(config), "--out", str(out)]) == 0
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    expected = {
        "index.html", "404.html", "feed.rss", "feed.atom", "feed.json",
        "announcements/one/index.html", "announcements/two/index.html",
        "topics/awards/index.html",
        "topics/awards/feed.rss", "topics/awards/feed.atom", "topics/awards/feed.json",
        "en/feed.rss", "en/feed.atom", "en/feed.json", "fr/feed.rss", "fr/feed.atom", "fr/feed.json",
        ".announce-build",
    }  # fmt: skip
    assert files == expected
    assert [e.title for e in feedparser.parse((out / "feed.atom").read_bytes()).entries] == ["Two", "One"]
    inbox.remove("one.md")
    assert main(["build", "--config", str(config), "--out", str(out)]) == 0
    assert not (out / "announcements" / "one").exists()
    assert not (out / "topics").exists()
    assert not list(out.rglob("*.tmp"))
    assert "wrote" in capsys.readouterr().out


def test_build_writes_attachments_under_their_own_names_readable_by_others(
    config: Path, inbox: Inbox, tmp_path: Path
) -> None:
    inbox.write("press kit.pdf", b"%PDF-1.4 kit")
    inbox.write("README", b"plain")
    inbox.release("one.md", attachments=["press kit.pdf", "README"])
    out = tmp_path / "site"
    assert main(["build", "--config", str(config), "--out", str(out)]) == 0
    folder = out / "announcements" / "one" / "attachments"
    assert (folder / "press kit.pdf").read_bytes() == b"%PDF-1.4 kit"
    assert (folder / "README").read_bytes() == b"plain"
    assert (out / "feed.atom").stat().st_mode & 0o777 == 0o644


def test_build_output_matches_what_http_serves(config: Path, inbox: Inbox, tmp_path: Path) -> None:
    inbox.release("one.md", title="One")
    out = tmp_path / "site"
    assert main(["build", "--config", str(config), "--out", str(out)]) == 0

    async def fetch() -> bytes:
        parts = build(load_settings(config))
        transport = httpx.ASGITransport(app=make_app(parts))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            body = (await client.get("/feed.atom")).content
        await parts.close()
        return body

    assert asyncio.run(fetch()) == (out / "feed.atom").read_bytes()


def test_status_shows_counts_last_scan_and_refused_files(
    config: Path, inbox: Inbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--config", str(config)]) == 0
    assert "last scan: never" in capsys.readouterr().out
    inbox.release("one.md")
    inbox.write("bad.md", "---\n: :\n")
    main(["build", "--config", str(config), "--out", str(tmp_path / "site")])
    capsys.readouterr()
    assert main(["status", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "releases: scheduled 0, published 1, held 0, withdrawn 0" in out
    assert "(2 files, 1 refused," in out
    assert "refused: bad.md:" in out


def test_announcements_option_overrides_config(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = Inbox(tmp_path / "elsewhere")
    other.release("x.md")
    assert main(["check", "--config", str(config), "--announcements", str(other.folder)]) == 0
    assert "x.md" in capsys.readouterr().out


def test_invalid_config_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("feed_size: 0\n")
    assert main(["check", "--config", str(bad)]) == 2
    assert "config key 'feed_size'" in capsys.readouterr().err


def test_unknown_config_key_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("feed_sise: 10\n")
    assert main(["status", "--config", str(bad)]) == 2
    assert "config key 'feed_sise': unknown key" in capsys.readouterr().err


def test_python_dash_m_service_is_the_same_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", "check", str(SAMPLE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "1 ok, 0 with errors" in result.stdout


def test_unreachable_database_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("database_url: postgresql+asyncpg://postgres@127.0.0.1:1/nothing\n")
    assert main(["status", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("announce: cannot open or migrate the database")
    assert "Traceback" not in err


def test_check_shows_what_was_extracted_from_a_plain_text_release(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = tmp_path / "2020-02-12-carnot-label.txt"
    seed.write_bytes(
        (REPO / "tests" / "data" / "plaintext" / "seed.txt").read_bytes()
    )  # the shared seed, as is
    assert main(["check", str(seed)]) == 0
    out = capsys.readouterr().out
    assert "date=2020-02-12T00:00:00" in out
    assert "dateline='Paris, February 12th 2020'" in out
    assert "sections='The Carnot label'" in out
    assert "title='The Carnot Institutes Télécom & Société Numérique and M.I.N.E.S" in out


def test_a_held_release_is_listed_by_status_and_published_by_release(
    tmp_path: Path, inbox: Inbox, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, embargo_grace_minutes=0.001)  # 60 ms: held as soon as it is late
    embargo = datetime.now(UTC) + timedelta(seconds=1)
    inbox.release("later.md", publish_at=embargo.isoformat())
    site = ["build", "--config", str(config), "--out", str(tmp_path / "site")]
    assert main(site) == 0  # stored while scheduled
    deadline = time.monotonic() + 10
    while datetime.now(UTC) < embargo + timedelta(seconds=0.2) and time.monotonic() < deadline:
        time.sleep(0.05)  # the service is "down" past the embargo and the grace
    assert main(site) == 0
    capsys.readouterr()
    assert main(["release", "--config", str(config), "elsewhere"]) == 1
    assert "'elsewhere' is not a held release (held: later)" in capsys.readouterr().err
    assert main(["status", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "releases: scheduled 0, published 0, held 1, withdrawn 0" in out
    assert "held: later: embargo " in out
    assert "publish it with: announce release later" in out
    assert main(["release", "--config", str(config), "later"]) == 0
    assert "published later;" in capsys.readouterr().out
    assert main(["status", "--config", str(config)]) == 0
    assert "releases: scheduled 0, published 1, held 0, withdrawn 0" in capsys.readouterr().out
    assert main(["release", "--config", str(config), "later"]) == 1

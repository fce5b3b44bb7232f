"""`announce preview`, `send` and the delivery part of `status`, on SQLite and the file outbox."""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

import pytest

from service.cli import main
from tests.conftest import RECENT, REPO, Inbox, write_config

SAMPLE = REPO / "announcements" / "2020-02-12-carnot-label.md"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path, mail_from="press@example.org")


def test_preview_writes_eml_html_and_text(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["preview", "--config", str(config), str(SAMPLE)]) == 0
    printed = capsys.readouterr().out.split()
    folder = tmp_path / "var" / "preview"
    assert printed == [str(folder / f"2020-02-12-carnot-label.{suffix}") for suffix in ("eml", "html", "txt")]
    message = message_from_bytes((folder / "2020-02-12-carnot-label.eml").read_bytes(), policy=policy.default)
    assert message["To"] == "subscriber@example.org"
    assert "Carnot" in (folder / "2020-02-12-carnot-label.txt").read_text()
    assert (folder / "2020-02-12-carnot-label.html").read_text().startswith("<!DOCTYPE html>")


def test_preview_of_a_broken_file_is_a_clear_error(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = Inbox(tmp_path / "drafts").write("broken.md", "---\ntitle: x\n---\n")
    assert main(["preview", "--config", str(config), str(broken)]) == 2
    assert "missing required key 'date'" in capsys.readouterr().err


def test_send_test_to_one_address_bypasses_the_ledger(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["send", "--config", str(config), "--test-to", "editor@example.org", str(SAMPLE)]) == 0
    assert capsys.readouterr().out.startswith("sent: written to")
    [written] = (tmp_path / "var" / "outbox").glob("*.eml")
    assert message_from_bytes(written.read_bytes(), policy=policy.default)["To"] == "editor@example.org"
    assert main(["status", "--config", str(config)]) == 0
    assert "deliveries: none yet" in capsys.readouterr().out


def test_send_test_to_refuses_a_bad_address(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["send", "--config", str(config), "--test-to", "not an address", str(SAMPLE)]) == 2
    assert "--test-to" in capsys.readouterr().err


def test_send_drains_the_ledger_and_status_shows_it(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for n in range(3):
        assert main(["subscribers", "add", "--config", str(config), f"r{n}@example.org",
                     "--confirmed", "--source", "test"]) == 0  # fmt: skip
    Inbox(tmp_path / "announcements").release("news.md", date=RECENT)
    assert main(["build", "--config", str(config), "--out", str(tmp_path / "site")]) == 0  # scans: queues
    capsys.readouterr()
    assert main(["send", "--config", str(config), "--wait"]) == 0
    out = capsys.readouterr().out
    assert "bulletin news: queued 0, sent 3" in out
    assert len(list((tmp_path / "var" / "outbox").glob("*.eml"))) == 3
    assert main(["status", "--config", str(config)]) == 0
    status = capsys.readouterr().out
    assert "subscribers: pending 0, confirmed 3, unsubscribed 0, bounced 0" in status
    assert "bulletin news: queued 0, sent 3, retry 0, unknown 0, failed 0, skipped 0" in status

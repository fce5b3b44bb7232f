"""OutboxMailer: exact .eml bytes, atomic and idempotent writes, safe names, failures as TEMPORARY."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from service.delivery.mailer import Envelope
from service.delivery.outbox import OutboxMailer, file_stem
from service.models import Outcome

LIMIT = 5.0
MESSAGE = "From: news@example.org\r\nSubject: Grüße\r\n\r\n.dot line\r\nBody ✓\r\n".encode()


def files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (recursively), by path relative to it, with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def envelope(key: str = "release-1.reader-7", data: bytes = MESSAGE, message_id: str = "<a@b>") -> Envelope:
    return Envelope("news@example.org", "reader@example.net", data, message_id, key=key)


async def test_writes_exactly_the_message_bytes(tmp_path: Path) -> None:
    async with asyncio.timeout(LIMIT):
        result = await OutboxMailer(tmp_path).send(envelope())
    path = tmp_path / "release-1.reader-7.eml"
    assert result.outcome is Outcome.SENT
    assert result.reply == f"written to {path}"
    assert files(tmp_path) == {path.name: MESSAGE}  # exact bytes, no temporary file left behind


async def test_creates_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "outbox" / "nested"
    async with asyncio.timeout(LIMIT):
        result = await OutboxMailer(folder).send(envelope())
    assert result.outcome is Outcome.SENT
    assert files(tmp_path) == {"outbox/nested/release-1.reader-7.eml": MESSAGE}


async def test_the_same_key_twice_overwrites(tmp_path: Path) -> None:
    mailer = OutboxMailer(tmp_path)
    async with asyncio.timeout(LIMIT):
        await mailer.send(envelope(data=b"first\r\n"))
        second = await mailer.send(envelope(data=b"second\r\n"))
    assert second.outcome is Outcome.SENT
    assert files(tmp_path) == {"release-1.reader-7.eml": b"second\r\n"}


async def test_the_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails half-way leaves the previous file whole and no temporary file."""
    mailer = OutboxMailer(tmp_path)
    async with asyncio.timeout(LIMIT):
        await mailer.send(envelope(data=b"old\r\n"))

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", failing_fsync)
    async with asyncio.timeout(LIMIT):
        result = await mailer.send(envelope(data=b"new\r\n"))
    assert result.outcome is Outcome.TEMPORARY
    assert "No space left on device" in result.reply
    assert files(tmp_path) == {"release-1.reader-7.eml": b"old\r\n"}


@pytest.mark.parametrize(
    "key", ["../x", "../../etc/passwd", "/abs/path", "a/../../b", "..", ".hidden", "sp ace"]
)
async def test_names_cannot_escape_the_folder(tmp_path: Path, key: str) -> None:
    folder = tmp_path / "outbox"
    async with asyncio.timeout(LIMIT):
        result = await OutboxMailer(folder).send(envelope(key=key))
    assert result.outcome is Outcome.SENT
    [written] = [tmp_path / name for name in files(tmp_path)]
    assert written.parent == folder
    assert not written.name.startswith(".")
    assert set(written.stem) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def test_names_are_stable_readable_and_distinct() -> None:
    assert file_stem("release-1.reader-7", "<a@b>") == "release-1.reader-7"
    assert file_stem("a/b", "<a@b>") != file_stem("a_b", "<a@b>")  # sanitised keys keep apart
    assert file_stem("a/b", "<a@b>").startswith("a_b-")
    assert file_stem("a/b", "<x@y>") == file_stem("a/b", "<a@b>")  # the key decides, not the id
    assert len(file_stem("k" * 1000, "<a@b>")) < 150


def test_without_a_key_the_message_id_names_the_file() -> None:
    assert file_stem("", "<a@b>") == file_stem("", "<a@b>")
    assert file_stem("", "<a@b>") != file_stem("", "<c@d>")
    assert file_stem("", "<a@b>").startswith("msg-")


async def test_unwritable_folder_is_temporary(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")  # a file where the folder should be: fails even for root
    async with asyncio.timeout(LIMIT):
        result = await OutboxMailer(blocker / "outbox").send(envelope())
    assert result.outcome is Outcome.TEMPORARY
    assert "cannot write" in result.reply
    assert str(blocker) in result.reply


async def test_concurrent_sends_write_every_file(tmp_path: Path) -> None:
    mailer = OutboxMailer(tmp_path)
    async with asyncio.timeout(LIMIT):
        results = await asyncio.gather(
            *(mailer.send(envelope(key=f"m{n}", data=b"%d\r\n" % n)) for n in range(20))
        )
        await mailer.close()
    assert {r.outcome for r in results} == {Outcome.SENT}
    assert files(tmp_path) == {f"m{n}.eml": b"%d\r\n" % n for n in range(20)}

"""File outbox: each message written atomically as `<key>.eml` (the embedded default transport).

The file holds exactly the message bytes, so it opens in any mail client; writing the same key again
replaces the file, which makes a retried send idempotent.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path

from service.delivery.mailer import Envelope
from service.files import write_atomic
from service.models import Outcome, SendResult

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_STEM = 120  # well under the usual 255-byte file-name limit, suffixes and temp names included


class OutboxMailer:
    """Implements `Mailer` by writing `.eml` files into one folder."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder

    def path_for(self, envelope: Envelope) -> Path:
        """Where `send()` writes this envelope."""
        return self._folder / f"{file_stem(envelope.key, envelope.message_id)}.eml"

    async def send(self, envelope: Envelope) -> SendResult:
        """Write the message file (off the event loop); file-system errors are TEMPORARY."""
        path = self.path_for(envelope)
        try:
            await asyncio.to_thread(write_atomic, path, envelope.data)
        except OSError as exc:
            return SendResult(Outcome.TEMPORARY, f"cannot write {path}: {exc}")
        return SendResult(Outcome.SENT, f"written to {path}")

    async def close(self) -> None:
        """Nothing to release: every file is closed when written."""

    def share(self, fraction: float) -> None:
        """Files are not rate-limited."""


def file_stem(key: str, message_id: str) -> str:
    """A file name stem from `key`, limited to `[A-Za-z0-9._-]` and never hidden, `.` or `..`.

    A key that had to be changed (or shortened) gets a short hash of itself appended, so two keys
    that sanitise alike still get different files. Without a usable key: a hash of the message id.
    """
    stem = _UNSAFE.sub("_", key).lstrip(".")
    if not stem.strip("._-"):
        return "msg-" + _digest(message_id, 32)
    if stem != key or len(stem) > _MAX_STEM:
        stem = f"{stem[:_MAX_STEM]}-{_digest(key, 12)}"
    return stem


def _digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:length]

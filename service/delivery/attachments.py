"""Which attachments a bulletin carries: the small ones, read from the drop folder when rendered."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from service.delivery.compose import AttachmentReader
from service.models import Attachment, Release


def small_attachments(folder: Path, max_bytes: int) -> AttachmentReader | None:
    """A reader of the attachments of at most `max_bytes` (None when nothing is attached: links only)."""
    if max_bytes <= 0:
        return None

    async def read(release: Release) -> list[tuple[Attachment, bytes]]:
        return await asyncio.to_thread(_read, folder, max_bytes, release)

    return read


def _read(folder: Path, max_bytes: int, release: Release) -> list[tuple[Attachment, bytes]]:
    root = folder.resolve()
    found: list[tuple[Attachment, bytes]] = []
    for item in release.announcement.attachments:
        path = (folder / item.path).resolve()
        if item.length > max_bytes or not path.is_relative_to(root):
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue  # gone since the scan: the link is still in the mail
        # A file replaced since the scan is not the one the release describes: link it, don't attach it.
        if hashlib.sha256(data).hexdigest() == item.sha256:
            found.append((item, data))
    return found

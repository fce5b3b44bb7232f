"""The HTML body readers see: the release body, preceded by its correction note when there is one."""

from __future__ import annotations

from html import escape
from zoneinfo import ZoneInfo

from service.models import Release


def reader_body(release: Release, zone: ZoneInfo) -> str:
    """Sanitised body HTML with the correction note (escaped) and its time on top."""
    ann = release.announcement
    if not ann.correction:
        return ann.body_html
    when = ""
    if release.corrected_at is not None:
        local = release.corrected_at.astimezone(zone)
        when = f' <time datetime="{local.isoformat()}">{local:%Y-%m-%d %H:%M %Z}</time>'
    note = f'<p class="correction"><strong>Correction{when}:</strong> {escape(ann.correction)}</p>\n'
    return note + ann.body_html

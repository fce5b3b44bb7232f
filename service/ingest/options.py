"""What the parsers need to know about the site, without depending on the settings object."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class IngestOptions:
    """Parsing rules that come from configuration."""

    timezone: ZoneInfo
    default_language: str = "en"
    max_file_bytes: int = 5_000_000

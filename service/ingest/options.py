"""What the parsers need to know about the site, without depending on the settings object."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from service.config import Settings


@dataclass(frozen=True, slots=True)
class IngestOptions:
    """Parsing rules that come from configuration."""

    timezone: ZoneInfo
    default_language: str = "en"
    max_file_bytes: int = 5_000_000
    max_pages: int = 100  # PDF pages read; a longer document is refused, not cut
    extract_seconds: float = 20.0  # wall-clock limit on extracting the text of a PDF
    languages: frozenset[str] = frozenset({"en", "fr"})  # what a file name may end with: carnot.fr.md

    @classmethod
    def from_settings(cls, settings: Settings) -> IngestOptions:
        """The parsing rules a configuration asks for."""
        return cls(
            settings.tz,
            settings.default_language,
            settings.max_file_bytes,
            settings.max_pages,
            settings.extract_seconds,
            frozenset(settings.site_languages),
        )

"""The service's one exception tree: every failure an operator can see is one of these."""

from __future__ import annotations

from pathlib import Path


class ServiceError(Exception):
    """Base of every error the service raises on purpose."""


class ConfigError(ServiceError):
    """The configuration is invalid; the message names the key."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"config key {key!r}: {reason}")
        self.key = key
        self.reason = reason


class AnnouncementError(ServiceError):
    """A release file cannot be ingested: which file, which line (1-based, if known), why, how to fix."""

    def __init__(self, file: Path | str, reason: str, *, line: int | None = None, hint: str = "") -> None:
        self.file = str(file)
        self.line = line
        self.reason = reason
        self.hint = hint
        super().__init__(self.describe())

    def describe(self) -> str:
        """Render as `file:line: reason (hint)`, the format `announce check` prints."""
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.reason}" + (f" ({self.hint})" if self.hint else "")


class DuplicateIdError(AnnouncementError):
    """Two release files claim the same id."""


class StoreError(ServiceError):
    """The database is unreachable or refused an operation."""

"""The one Jinja2 environment: sandboxed, autoescaping, strict; shared by web pages and email."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

# English month names spelled out here rather than via strftime("%B"), whose output follows the
# process locale: pages and emails must not change with the host's LANG.
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

# Markup formats are escaped; plain-text email bodies are not (they would show "&amp;").
# Anything else, including templates built from strings, is escaped: the safe default.
_ESCAPED = ("html", "htm", "xml", "html.j2", "xml.j2")
_UNESCAPED = ("txt", "txt.j2", "text.j2", "subject.j2")


def _require_aware(value: datetime) -> datetime:
    """Return value unchanged, refusing naive datetimes (their instant is ambiguous)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: expected a time-zone aware datetime")
    return value


def isodate(value: datetime) -> str:
    """Format an aware datetime as an RFC 3339 timestamp in UTC, e.g. 2020-02-12T09:30:00Z."""
    utc = _require_aware(value).astimezone(UTC)
    return utc.isoformat().replace("+00:00", "Z")


_MONTHS_FR = (
    "janvier", "février", "mars", "avril", "mai", "juin",
    "juillet", "août", "septembre", "octobre", "novembre", "décembre",
)  # fmt: skip


def localdate(value: datetime, zone: tzinfo | str, lang: str = "en") -> str:
    """Format an aware datetime as a human date in zone, e.g. "12 February 2020" (or "12 février 2020")."""
    tz = ZoneInfo(zone) if isinstance(zone, str) else zone
    local = _require_aware(value).astimezone(tz)
    months = _MONTHS_FR if lang.split("-")[0].lower() == "fr" else _MONTHS
    return f"{local.day} {months[local.month - 1]} {local.year}"


def make_environment(templates_dir: Path) -> jinja2.Environment:
    """Build the sandboxed template environment that loads from templates_dir."""
    # Immutable sandbox: templates may read attributes and call safe methods, but can neither
    # reach Python internals (__class__, __globals__ ...) nor mutate the data they are given.
    env = ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(templates_dir),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=_ESCAPED,
            disabled_extensions=_UNESCAPED,
            default_for_string=True,
            default=True,
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # Templates ship with the code: never stat them per render.
        auto_reload=False,
    )
    env.filters["isodate"] = isodate
    env.filters["localdate"] = localdate
    # No globals are added on purpose: templates see only what a renderer passes them, never
    # settings, secrets or the process environment.
    return env

"""Datelines: "Paris, le 12 février 2020" -> place, date and language, in English and French."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time

from service.errors import AnnouncementError
from service.ingest.options import IngestOptions

_ENGLISH_MONTHS = {
    "january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7,
    "august": 8, "september": 9, "october": 10, "november": 11, "december": 12,
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "sept": 9,
    "oct": 10, "nov": 11, "dec": 12,
}  # fmt: skip
_FRENCH_MONTHS = {
    "janvier": 1, "février": 2, "fevrier": 2, "mars": 3, "avril": 4, "mai": 5, "juin": 6,
    "juillet": 7, "août": 8, "aout": 8, "septembre": 9, "octobre": 10, "novembre": 11,
    "décembre": 12, "decembre": 12,
}  # fmt: skip
_MONTHS = {**_ENGLISH_MONTHS, **_FRENCH_MONTHS}
_MONTH_NAMES = "|".join(sorted(_MONTHS, key=len, reverse=True))
_WEEKDAYS = (
    "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
    "|lundi|mardi|mercredi|jeudi|vendredi|samedi|dimanche"
)
_PLACE = rf"(?:(?!(?:{_WEEKDAYS})\b)(?P<place>[^\W\d_](?:[^\W\d_]|[ '’.(),-]){{0,60}}?),\s*)?"
_PREFIX = rf"(?:le\s+)?(?:(?P<weekday>{_WEEKDAYS}),?\s+)?(?:le\s+)?"
_DATE_FORMS = (
    rf"{_PREFIX}(?P<day>\d{{1,2}})(?:st|nd|rd|th|er|e)?\s+(?P<month>{_MONTH_NAMES})\.?,?\s+(?P<year>\d{{4}})",
    rf"{_PREFIX}(?P<month>{_MONTH_NAMES})\.?\s+(?P<day>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<year>\d{{4}})",
    r"(?:le\s+)?(?P<day>\d{1,2})[/.](?P<month>\d{1,2})[/.](?P<year>\d{4})",
    r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})",
)
# A dateline is a whole line (a dash may end it: the lead follows on the next line), or starts the
# lead and is followed by a dash (hyphen, double hyphen, en or em dash) and the text.
_DATELINES = tuple(
    re.compile(
        rf"{_PLACE}(?P<date>{form})\.?"
        r"(?:\s*(?:--?|[\u2013\u2014])?$|(?:\s+--?\s+|\s*[\u2013\u2014]\s*)(?P<tail>\S.*))",
        re.I,
    )
    for form in _DATE_FORMS
)
_SPACES = re.compile(r"[ \t]+")


@dataclass(frozen=True, slots=True)
class Dateline:
    """Where and when a release was issued, as its first line says."""

    place: str | None
    moment: datetime
    written: str  # the dateline as written, spaces collapsed
    lang: str | None  # "fr" or "en" when the month or weekday name tells


def parse_dateline(line: str, source: str, line_number: int, options: IngestOptions) -> Dateline | None:
    """A dateline filling the whole line ("Paris, le 12 février 2020"), or None."""
    match = _match(line)
    if match is None or match.group("tail"):
        return None
    return _dateline_of(match, source, line_number, options)


def _match(line: str) -> re.Match[str] | None:
    for pattern in _DATELINES:
        match = pattern.fullmatch(line.strip())
        if match:
            return match
    return None


def _dateline_of(match: re.Match[str], source: str, line: int, options: IngestOptions) -> Dateline:
    groups = match.groupdict()
    month_text = groups["month"]
    month = int(month_text) if month_text.isdigit() else _MONTHS[_month_key(month_text)]
    try:
        day = date(int(groups["year"]), month, int(groups["day"]))
    except ValueError:
        raise AnnouncementError(
            source,
            f"the dateline gives an impossible date: {match.group('date')!r}",
            line=line,
            hint="check the day and the month (numeric dates are day/month/year)",
        ) from None
    place = groups["place"].strip() if groups["place"] else None
    written = _SPACES.sub(" ", match.group(0)[: match.end("date")]).strip()
    return Dateline(place, datetime.combine(day, time(0), tzinfo=options.timezone), written, _lang(match))


def _month_key(name: str) -> str:
    # re.I also matches U+017F (long s) for "s" and U+0130 (dotted I) for "i", whose lower() is not
    # in the table.
    key = name.lower()
    if key in _MONTHS:
        return key
    return next((month for month in _MONTHS if re.fullmatch(re.escape(month), name, re.I)), key)


def _lang(match: re.Match[str]) -> str | None:
    # French month or weekday names, or "le 12 …", say French; English names say English.
    month, weekday = match.groupdict().get("month"), match.groupdict().get("weekday")
    words = {_month_key(month) if month else "", (weekday or "").lower()} - {""}
    weekdays = _WEEKDAYS.split("|")
    if match.group("date").lower().startswith("le ") or words & {*_FRENCH_MONTHS, *weekdays[7:]}:
        return "fr"
    if words & {*_ENGLISH_MONTHS, *weekdays[:7]}:
        return "en"
    return None


def is_dateline(line: str) -> bool:
    """True for a line that is only a dateline (no text after it)."""
    match = _match(line)
    return match is not None and not match.group("tail")


def lead_dateline(
    line: str, source: str, line_number: int, options: IngestOptions
) -> tuple[Dateline, str] | None:
    """A dateline that starts a paragraph and is followed by a dash and text: the dateline and that text."""
    match = _match(line)
    if match is None or not match.group("tail"):
        return None
    return _dateline_of(match, source, line_number, options), match.group("tail")

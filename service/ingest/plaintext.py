"""Plain-text press releases (.txt): dateline, marker, title, lead and sections -> metadata and HTML.

The text is cut into blocks at blank lines (lines of spaces count as blank). The blocks before the
lead form the header: the dateline ("Paris, le 12 février 2020"), the "Press release" marker
(dropped) and an optional title line. The first other block is the lead; the rest are paragraphs
and section headings. An optional `---` front matter block overrides anything found in the text.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from service.errors import AnnouncementError
from service.ingest.frontmatter import Document as FrontMatter
from service.ingest.frontmatter import Metadata, split, validate
from service.ingest.options import IngestOptions
from service.ingest.sanitize import clean_html, strip_illegal

NO_DATE_HINT = "add a dateline such as 'Paris, 12 February 2020' or a 'date:' front matter line"
NO_TITLE_HINT = "add a title line or a 'title:' front matter line"
_TITLE_LIMIT = 300
_SUMMARY_LIMIT = 2000
_HEADING_LIMIT = 100

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
_MONTH_NAMES = "|".join(sorted({**_ENGLISH_MONTHS, **_FRENCH_MONTHS}, key=len, reverse=True))
_WEEKDAYS = (
    "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
    "|lundi|mardi|mercredi|jeudi|vendredi|samedi|dimanche"
)
_PLACE = rf"(?:(?!(?:{_WEEKDAYS})\b)(?P<place>[^\W\d_](?:[^\W\d_]|[ '’.()-]){{0,60}}?),\s*)?"
_PREFIX = rf"(?:le\s+)?(?:(?P<weekday>{_WEEKDAYS}),?\s+)?(?:le\s+)?"
_DATE_FORMS = (
    rf"{_PREFIX}(?P<day>\d{{1,2}})(?:st|nd|rd|th|er|e)?\s+(?P<month>{_MONTH_NAMES})\.?,?\s+(?P<year>\d{{4}})",
    rf"{_PREFIX}(?P<month>{_MONTH_NAMES})\.?\s+(?P<day>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<year>\d{{4}})",
    r"(?:le\s+)?(?P<day>\d{1,2})[/.](?P<month>\d{1,2})[/.](?P<year>\d{4})",
    r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})",
)
# A dateline is a whole line, or starts the lead and is followed by a dash and the text.
_DATELINES = tuple(
    re.compile(rf"{_PLACE}(?P<date>{form})\.?(?:$|(?:\s+-\s+|\s*[\u2013\u2014]\s*)(?P<tail>\S.*))", re.I)
    for form in _DATE_FORMS
)
_MARKER = re.compile(
    r"(?:(?P<en>press release|news release|media release)|(?P<fr>communiqu[ée](?: de presse)?))\s*[.:]?", re.I
)
_SENTENCE_END = re.compile(r"([.!?…])\s+(?=\S)")
_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "mme", "mlle", "no", "vs", "inc", "ltd", "co"}
)
_HYPHEN_PAIR = re.compile(r"(\w+)-(?=(\w+))")
_LINE_END_HYPHEN = re.compile(r"(\w+)-$")
_SPACES = re.compile(r"[ \t]+")
_NO_HEADING_END = ".,;:!?…"
_SENTENCE_ENDS = '.!?…»”"'


@dataclass(frozen=True, slots=True)
class Dateline:
    """Where and when a release was issued, as its first line says."""

    place: str | None
    moment: datetime
    written: str  # the dateline as written, spaces collapsed
    lang: str | None  # "fr" or "en" when the month or weekday name tells


@dataclass(frozen=True, slots=True)
class _Block:
    """Consecutive non-blank lines; `line` is the file line of the first one."""

    line: int
    lines: tuple[str, ...]


@dataclass(slots=True)
class Extracted:
    """What the text itself says, before the front matter overrides it."""

    dateline: Dateline | None = None
    dateline_line: int | None = None
    lang: str | None = None
    title: str | None = None
    title_line: int | None = None
    lead: str | None = None
    lead_line: int | None = None
    body: tuple[tuple[str, str], ...] = ()  # ("p" | "h2", text)


def parse_plaintext(text: str, source: str, options: IngestOptions) -> tuple[Metadata, str]:
    """Parse a plain-text release (optional front matter, then text) into metadata and sanitised HTML."""
    front = split(text, source) if text.split("\n", 1)[0].strip() == "---" else None
    body, first_line = (front.body, front.body_line) if front else (text, 1)
    found = extract(body, first_line, source, options)
    given = {key: value for key, value in (front.data if front else {}).items() if value is not None}
    if "date" not in given and found.dateline is None:
        raise AnnouncementError(source, "no date found in the text", hint=NO_DATE_HINT)
    if "title" not in given and found.title is None:
        raise AnnouncementError(source, "no title found in the text", hint=NO_TITLE_HINT)
    data, lines = _defaults(found)
    data.update(given)
    lines.update(front.lines if front else {})
    meta = validate(FrontMatter(data=data, lines=lines, body="", body_line=first_line), source, options)
    return meta, render(found)


def _defaults(found: Extracted) -> tuple[dict[str, Any], dict[str, int]]:
    data: dict[str, Any] = {}
    lines: dict[str, int] = {}
    for key, value, line in (
        ("title", found.title, found.title_line),
        ("date", found.dateline.moment if found.dateline else None, found.dateline_line),
        ("summary", found.lead, found.lead_line),
        ("lang", found.lang, found.dateline_line),
    ):
        if value is not None:
            data[key] = value
            lines[key] = line or 1
    return data, lines


def extract(text: str, first_line: int, source: str, options: IngestOptions) -> Extracted:
    """Find the dateline, marker, title, lead, paragraphs and headings of a release's text."""
    blocks = _blocks(text, first_line)
    found = Extracted()
    index = 0
    while index < len(blocks) and _header_block(blocks[index], found, source, options):
        index += 1
    rest = blocks[index:]
    if rest and found.dateline is None:
        rest[0] = _inline_dateline(rest[0], found, source, options)
    items: list[tuple[str, str]] = []
    hyphenated = _hyphenated(text)
    for position, block in enumerate(rest):
        if position > 0 and position < len(rest) - 1 and _is_heading(block):
            items.append(("h2", block.lines[0]))
            continue
        lines = _unquote(block.lines) if position == 0 else block.lines
        items.extend(("p", paragraph) for paragraph in _paragraphs(lines, hyphenated))
    if rest and items:
        found.lead, found.lead_line = _cut(items[0][1], _SUMMARY_LIMIT), rest[0].line
        if found.title is None:
            found.title, found.title_line = _headline(items[0][1]), rest[0].line
    found.body = tuple(items)
    return found


def render(found: Extracted) -> str:
    """Body HTML: escaped text in <p> and <h2>, the dateline in <em> before the first paragraph."""
    parts: list[str] = []
    dateline = found.dateline.written if found.dateline else None
    for kind, text in found.body:
        content = html.escape(text, quote=False)
        if kind == "p" and dateline:
            content = f"<em>{html.escape(dateline, quote=False)}</em> — {content}"
            dateline = None
        parts.append(f"<{kind}>{content}</{kind}>")
    if dateline:
        parts.insert(0, f"<p><em>{html.escape(dateline, quote=False)}</em></p>")
    return clean_html("\n".join(parts))


def outline(body_html: str) -> tuple[str | None, tuple[str, ...]]:
    """The dateline shown before the first paragraph (if any) and the section headings, as text."""
    dateline = re.match(r"<p><em>(.*?)</em>", body_html)
    headings = re.findall(r"<h2>(.*?)</h2>", body_html)
    return (html.unescape(dateline.group(1)) if dateline else None), tuple(map(html.unescape, headings))


def parse_dateline(line: str, source: str, line_number: int, options: IngestOptions) -> Dateline | None:
    """A dateline filling the whole line ("Paris, le 12 février 2020"), or None."""
    match = _match_dateline(line)
    if match is None or match.group("tail"):
        return None
    return _dateline(match, source, line_number, options)


def _match_dateline(line: str) -> re.Match[str] | None:
    for pattern in _DATELINES:
        match = pattern.fullmatch(line.strip())
        if match:
            return match
    return None


def _dateline(match: re.Match[str], source: str, line: int, options: IngestOptions) -> Dateline:
    groups = match.groupdict()
    month_text = groups["month"].lower()
    month = int(month_text) if month_text.isdigit() else {**_ENGLISH_MONTHS, **_FRENCH_MONTHS}[month_text]
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


def _lang(match: re.Match[str]) -> str | None:
    # French month or weekday names, or "le 12 …", say French; English names say English.
    words = {(match.groupdict().get(key) or "").lower() for key in ("month", "weekday")} - {""}
    weekdays = _WEEKDAYS.split("|")
    if match.group("date").lower().startswith("le ") or words & {*_FRENCH_MONTHS, *weekdays[7:]}:
        return "fr"
    if words & {*_ENGLISH_MONTHS, *weekdays[:7]}:
        return "en"
    return None


def _header_block(block: _Block, found: Extracted, source: str, options: IngestOptions) -> bool:
    # True when the block is consumed as header (dateline, marker, title line).
    datelines: list[tuple[int, Dateline]] = []
    marker_lang: str | None = None
    for offset, line in enumerate(block.lines):
        dateline = parse_dateline(line, source, block.line + offset, options)
        marker = _MARKER.fullmatch(line.strip())
        if dateline is not None:
            datelines.append((block.line + offset, dateline))
        elif marker is not None:
            marker_lang = "fr" if marker.group("fr") else "en"
        else:
            return _title_block(block, found)
    if datelines and found.dateline is None:
        found.dateline_line, found.dateline = datelines[0]
    found.lang = marker_lang or found.lang or (found.dateline.lang if found.dateline else None)
    return True


def _title_block(block: _Block, found: Extracted) -> bool:
    text = _SPACES.sub(" ", " ".join(block.lines)).strip()
    if found.title is not None or len(block.lines) > 3 or len(text) > _TITLE_LIMIT:
        return False
    if text[0] == ">" or text[0].islower() or text[-1] in ".,;:…":
        return False
    found.title, found.title_line = text, block.line
    return True


def _inline_dateline(block: _Block, found: Extracted, source: str, options: IngestOptions) -> _Block:
    # "Paris, le 12 février 2020 — Le groupe annonce …": the dateline starts the lead (any dash).
    first = block.lines[0].lstrip("> ")
    match = _match_dateline(first)
    if match is None or not match.group("tail"):
        return block
    found.dateline, found.dateline_line = _dateline(match, source, block.line, options), block.line
    found.lang = found.lang or found.dateline.lang
    return _Block(block.line, (match.group("tail"), *block.lines[1:]))


def _blocks(text: str, first_line: int) -> list[_Block]:
    blocks: list[_Block] = []
    current: list[str] = []
    start = first_line
    lines = strip_illegal(text.replace("\t", " ")).split("\n")
    for number, raw in enumerate([*lines, ""], start=first_line):
        line = _SPACES.sub(" ", raw).strip()
        if line:
            start = number if not current else start
            current.append(line)
        elif current:
            blocks.append(_Block(start, tuple(current)))
            current = []
    return blocks


def _is_heading(block: _Block) -> bool:
    # A short line alone between blank lines, without final punctuation, not starting lowercase.
    text = block.lines[0]
    return (
        len(block.lines) == 1
        and len(text) <= _HEADING_LIMIT
        and text[-1] not in _NO_HEADING_END
        and not text[0].islower()
        and text[0] != ">"
    )


def _unquote(lines: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(re.sub(r"^>\s*", "", line) for line in lines if line.strip() != ">")


def _paragraphs(lines: tuple[str, ...], hyphenated: frozenset[str]) -> list[str]:
    # A line that ends a sentence well short of the block's width, followed by a capital, ends a paragraph.
    width = max(len(line) for line in lines)
    paragraphs: list[list[str]] = [[]]
    for line, following in zip(lines, [*lines[1:], ""], strict=True):
        paragraphs[-1].append(line)
        short = width >= 40 and len(line) < width * 2 / 3
        if following and short and line[-1] in _SENTENCE_ENDS and following[0].isupper():
            paragraphs.append([])
    return [_join(paragraph, hyphenated) for paragraph in paragraphs if paragraph]


def _join(lines: list[str], hyphenated: frozenset[str]) -> str:
    # Lines broken by the export are joined with one space; see docs/formats.md for hyphenation.
    text = lines[0]
    for line in lines[1:]:
        broken = _LINE_END_HYPHEN.search(text)
        next_word = re.match(r"\w+", line)
        if text.endswith("\u00ad"):
            text = text[:-1] + line
        elif broken is None:
            text += " " + line
        elif (
            broken.group(1).islower()
            and line[0].islower()
            and next_word is not None
            and f"{broken.group(1)}-{next_word.group()}".lower() not in hyphenated
        ):
            text = text[:-1] + line
        else:
            text += line
    return text.replace("\u00ad", "")


def _hyphenated(text: str) -> frozenset[str]:
    # Hyphenated words the text writes whole on one line somewhere: "well-known" stays "well-known".
    return frozenset(f"{a}-{b}".lower() for a, b in _HYPHEN_PAIR.findall(text))


def _headline(lead: str) -> str:
    # The lead's first sentence, without its final full stop, at most 300 characters.
    sentence = lead
    for match in _SENTENCE_END.finditer(lead):
        word = lead[: match.start()].rsplit(" ", 1)[-1].lower()
        following = lead[match.end()]
        if match.group(1) == "." and (word in _ABBREVIATIONS or len(word) <= 1):
            continue
        if following.islower():
            continue
        sentence = lead[: match.start() + 1]
        break
    if sentence.endswith(".") and not sentence.endswith(".."):
        sentence = sentence[:-1]
    return _cut(sentence, _TITLE_LIMIT)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:.") + "…"

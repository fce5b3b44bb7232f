"""Plain-text press releases (.txt): dateline, marker, title, lead and sections -> metadata and HTML.

The text is cut into blocks at blank lines (lines of spaces count as blank). The lines before the
lead form the header: the dateline ("Paris, le 12 février 2020"), the "Press release" marker
(dropped) and an optional title line, with or without blank lines between them. The first other
block is the lead; the rest are paragraphs, section headings, bulleted and numbered lists and
contact blocks (kept line by line). An optional `---` front matter block overrides anything found
in the text.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service.errors import AnnouncementError
from service.ingest.dateline import Dateline, is_dateline, lead_dateline, parse_dateline
from service.ingest.frontmatter import Document as FrontMatter
from service.ingest.frontmatter import Metadata, split, validate
from service.ingest.options import IngestOptions
from service.ingest.sanitize import clean_html, strip_illegal

NO_DATE_HINT = "add a dateline such as 'Paris, 12 February 2020' or a 'date:' front matter line"
NO_TITLE_HINT = "add a title line or a 'title:' front matter line"
_TITLE_LIMIT = 300
_SUMMARY_LIMIT = 2000
_HEADING_LIMIT = 100

_MARKER = re.compile(
    r"(?:(?P<en>press release|news release|media release|for immediate release)"
    r"|(?P<fr>communiqu[ée](?: de presse)?|pour (?:diffusion|publication) imm[ée]diate))\s*[.:]?",
    re.I,
)
_SENTENCE_END = re.compile(r"([.!?…])\s+(?=\S)")
_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "mme", "mlle", "no", "vs", "inc", "ltd", "co"}
)
# Matches start at a word's start and never backtrack into the word, so a long word costs linear time.
_HYPHEN_PAIR = re.compile(r"(?<!\w)(\w++)-(?=(\w+))")
_LINE_END_HYPHEN = re.compile(r"(?<!\w)(\w++)-$")
_WORD_TAIL = 100  # the end of a joined run searched for a broken word
_SPACES = re.compile(r"[ \t]+")
_NO_HEADING_END = ".,;:!?…"
_SENTENCE_ENDS = '.!?…»”"'
# List items: a bullet (hyphen, "*", "•" and other bullet signs, en dash) or "1." / "1)", then a space.
_BULLET = re.compile(r"[-*•▪●◦‣\u2013]\s+(?=\S)")
_UNAMBIGUOUS_BULLETS = "•▪●◦‣"  # unlike hyphens, en dashes and "*", never a dash or a footnote sign
_NUMBERED = re.compile(r"(\d{1,2})[.)]\s+(?=\S)")
_ITEM_ENDS = ".!?…;:"
# Lines without words that exports and typists use as separators ("* * *", "###") or end marks: dropped.
_RULE = re.compile(r"[-=_*~#•·.\s]+")
_END_MARK = re.compile(r"(?i:[-\u2013\u2014#*]+\s*(?:ends?|fin)\s*[-\u2013\u2014#*]+)|ENDS|FIN|-\s*30\s*-")
_CONTACT_LABEL = re.compile(
    r"(?P<label>(?:press|media)\s+(?:contacts?|enquiries|inquiries|office|relations)|contacts?"
    r"|for\s+(?:more|further)\s+information(?:,?\s+(?:please\s+)?contact)?"
    r"|contacts?\s+(?:presse|m[ée]dias?)|relations?\s+(?:presse|m[ée]dias)|service\s+de\s+presse"
    r"|pour\s+(?:plus\s+d['’]informations?|tout\s+renseignement|toute\s+information))"
    r"\s*(?::\s*(?P<rest>\S.*)|:)?",
    re.I,
)
_SECTION_LABEL = re.compile(
    r"(?:about|[àa]\s+propos\s+d(?:e|u|es|['’]))\s*[^\W\d_].{0,80}|notes?\s+(?:to|for)\s+editors"
    r"|editors['’]?\s+notes?|notes?\s+aux\s+r[ée]dactions|background",
    re.I,
)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# A phone number has at least 9 digits, so "12/02/2020" and "2020-2021" are not phone numbers.
_PHONE = re.compile(r"(?:\+|\b)\d(?:[ .()/-]?\d){8,}|^(?:t[ée]l|phone|mobile|portable|fax)\.?\s*:", re.I)
_CONTACT_WIDTH = 60
_PROSE_WIDTH = 80


@dataclass(frozen=True, slots=True)
class _Block:
    """Consecutive non-blank lines; `line` is the file line of the first one."""

    line: int
    lines: tuple[str, ...]
    indents: tuple[int, ...]  # leading spaces of each line (a list item's continuation is indented)


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
    # (kind, text), kind "p", "h2", "ul", "ol" or "lines" (a contact block); list items and the lines of
    # a contact block are separated by "\n" in the text.
    body: tuple[tuple[str, str], ...] = ()


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
    """Find the dateline, marker, title, lead, paragraphs, headings, lists and contacts of a release."""
    found = Extracted()
    blocks = [block for block in (_keep(block, _unruled) for block in _blocks(text, first_line)) if block]
    body = _header(blocks, found, source, options)
    if body and found.dateline is None:
        body[0] = _inline_dateline(body[0], found, source, options)
    # The lead's '>' marks go; a lead that was nothing but marks leaves the lead to the next block.
    start = 0
    while start < len(body) and (lead := _keep(body[start], _unquoted)) is None:
        start += 1
    body = [lead, *body[start + 1 :]] if start < len(body) and lead is not None else []
    items = _body(body, _hyphenated(text))
    if body and items:
        found.lead, found.lead_line = _cut(items[0][1], _SUMMARY_LIMIT), body[0].line
        if found.title is None:
            found.title, found.title_line = _headline(items[0][1]), body[0].line
    found.body = tuple(items)
    return found


def render(found: Extracted) -> str:
    """Body HTML: escaped <p>, <h2>, <ul>/<ol> and contact lines split by <br>; the dateline in <em> first."""
    parts: list[str] = []
    dateline = found.dateline.written if found.dateline else None
    for kind, text in found.body:
        if kind in ("ul", "ol"):
            entries = "".join(f"<li>{html.escape(entry, quote=False)}</li>\n" for entry in text.split("\n"))
            parts.append(f"<{kind}>\n{entries}</{kind}>")
            continue
        # "<br>\n" as Markdown writes it: text extraction that drops tags still separates the lines.
        content = "<br>\n".join(html.escape(line, quote=False) for line in text.split("\n"))
        if kind == "p" and dateline:
            content = f"<em>{html.escape(dateline, quote=False)}</em> — {content}"
            dateline = None
        tag = "p" if kind == "lines" else kind
        parts.append(f"<{tag}>{content}</{tag}>")
    if dateline:
        parts.insert(0, f"<p><em>{html.escape(dateline, quote=False)}</em></p>")
    return clean_html("\n".join(parts))


def outline(body_html: str) -> tuple[str | None, tuple[str, ...]]:
    """The dateline shown before the first paragraph (if any) and the section headings, as text."""
    dateline = re.match(r"<p><em>(.*?)</em>", body_html)
    headings = re.findall(r"<h2>(.*?)</h2>", body_html)
    return (html.unescape(dateline.group(1)) if dateline else None), tuple(map(html.unescape, headings))


def _header(blocks: list[_Block], found: Extracted, source: str, options: IngestOptions) -> list[_Block]:
    # Datelines, markers and one title from the top are the header; the blocks left are the lead and body.
    for index, whole in enumerate(blocks):
        block = _peel(whole, found, source, options)
        if block is not None and not _title_block(block, found, source, options):
            return [block, *blocks[index + 1 :]]
    return []


def _peel(block: _Block, found: Extracted, source: str, options: IngestOptions) -> _Block | None:
    # Dateline and marker lines at the top of a block are header, even without a blank line after them.
    for offset, line in enumerate(block.lines):
        if not _header_line(line, block.line + offset, found, source, options):
            return _Block(block.line + offset, block.lines[offset:], block.indents[offset:])
    return None


def _header_line(line: str, number: int, found: Extracted, source: str, options: IngestOptions) -> bool:
    # The first dateline gives the date; a marker's language wins over the dateline's.
    dateline = parse_dateline(line, source, number, options)
    if dateline is not None:
        if found.dateline is None:
            found.dateline, found.dateline_line = dateline, number
            found.lang = found.lang or dateline.lang
        return True
    marker = _MARKER.fullmatch(line.strip())
    if marker is None:
        return False
    found.lang = "fr" if marker.group("fr") else "en"
    return True


def _is_header_line(line: str) -> bool:
    return is_dateline(line) or _MARKER.fullmatch(line.strip()) is not None


def _title_block(block: _Block, found: Extracted, source: str, options: IngestOptions) -> bool:
    # A title block may end with the dateline or the marker: "Acme opens a lab" / "Lyon, 3 March 2021".
    end = len(block.lines)
    while end > 1 and _is_header_line(block.lines[end - 1]):
        end -= 1
    text = _SPACES.sub(" ", " ".join(block.lines[:end])).strip()
    if found.title is not None or end > 3 or len(text) > _TITLE_LIMIT:
        return False
    if text[0] == ">" or text[0].islower() or text[-1] in ".,;:…":
        return False
    found.title, found.title_line = text, block.line
    for offset in range(end, len(block.lines)):
        _header_line(block.lines[offset], block.line + offset, found, source, options)
    return True


def _inline_dateline(block: _Block, found: Extracted, source: str, options: IngestOptions) -> _Block:
    # "Paris, le 12 février 2020 — Le groupe annonce …": the dateline starts the lead (any dash).
    leading = lead_dateline(block.lines[0].lstrip("> "), source, block.line, options)
    if leading is None:
        return block
    (found.dateline, tail), found.dateline_line = leading, block.line
    found.lang = found.lang or found.dateline.lang
    return _Block(block.line, (tail, *block.lines[1:]), block.indents)


def _blocks(text: str, first_line: int) -> list[_Block]:
    blocks: list[_Block] = []
    current: list[str] = []
    indents: list[int] = []
    start = first_line
    lines = strip_illegal(text.replace("\t", " ")).split("\n")
    for number, raw in enumerate([*lines, ""], start=first_line):
        line = _SPACES.sub(" ", raw).strip()
        if line:
            start = number if not current else start
            current.append(line)
            indents.append(len(raw) - len(raw.lstrip()))
        elif current:
            blocks.append(_Block(start, tuple(current), tuple(indents)))
            current, indents = [], []
    return blocks


def _keep(block: _Block, change: Callable[[str], str | None]) -> _Block | None:
    # The block with each line changed (None or "" drops the line); None when no line is left.
    kept = [(offset, new) for offset, line in enumerate(block.lines) if (new := change(line))]
    if not kept:
        return None
    return _Block(
        block.line + kept[0][0],
        tuple(line for _, line in kept),
        tuple(block.indents[offset] for offset, _ in kept),
    )


def _unruled(line: str) -> str | None:
    if _END_MARK.fullmatch(line) or (_RULE.fullmatch(line) and len(line.replace(" ", "")) >= 3):
        return None
    return line


def _unquoted(line: str) -> str | None:
    return None if line == ">" else re.sub(r"^>\s*", "", line)


def _is_heading(block: _Block) -> bool:
    # A short line alone between blank lines, without final punctuation, not starting lowercase.
    text = block.lines[0]
    return (
        len(block.lines) == 1
        and len(text) <= _HEADING_LIMIT
        and text[-1] not in _NO_HEADING_END
        and not text[0].islower()
        and text[0] != ">"
        and _BULLET.match(text) is None
    )


# What the body is made of while it is built: (kind, texts), several texts for list items and lines.
_Items = list[tuple[str, list[str]]]


def _body(blocks: list[_Block], hyphenated: frozenset[str]) -> list[tuple[str, str]]:
    # The lead block starts with a paragraph; later blocks may be headings, lists or contact lines.
    out: _Items = []
    contact = False  # after a "Press contact" label, short blocks keep their lines
    for position, whole in enumerate(blocks):
        block = whole
        following = blocks[position + 1] if position + 1 < len(blocks) else None
        if position == 0:
            _flow(whole, hyphenated, out, lead=True)
            continue
        label = _CONTACT_LABEL.fullmatch(whole.lines[0])
        if label is not None and (following is not None or len(whole.lines) > 1 or label.group("rest")):
            out.append(("h2", [label.group("label")]))
            contact = True
            rest = label.group("rest")
            block = _Block(
                whole.line,
                ((rest,) if rest else ()) + whole.lines[1:],
                whole.indents if rest else whole.indents[1:],
            )
            if not block.lines:
                continue
        if contact and not _ends_contacts(block, following):
            if _list_marker(block.lines[0]) is None:
                out.append(("lines", list(block.lines)))
            else:
                _flow(block, hyphenated, out)
            continue
        contact = False
        section = _section_split(block)
        if section is not None:
            out.append(("h2", [block.lines[0]]))
            block = section
        if following is not None and _heading_here(block, following, out):
            out.append(("h2", [block.lines[0]]))
        elif _is_contact(block.lines):
            out.append(("lines", list(block.lines)))
        else:
            _flow(block, hyphenated, out)
    return [(kind, "\n".join(texts)) for kind, texts in out]


def _heading_here(block: _Block, following: _Block, out: _Items) -> bool:
    # "1. Context" alone is a numbered heading, unless it continues a list or the next block is item 2.
    if not _is_heading(block):
        return False
    marker = _list_marker(block.lines[0])
    if marker is None:
        return True
    after = _list_marker(following.lines[0])
    return not (
        _resumes(out, marker[0], marker[1]) or (after is not None and after[:2] == ("ol", marker[1] + 1))
    )


def _section_split(block: _Block) -> _Block | None:
    # "About IMT" directly above its text (no blank line): the label line is a heading of its own.
    first, others = block.lines[0], block.lines[1:]
    if not others or _SECTION_LABEL.fullmatch(first) is None or first[-1] in _NO_HEADING_END:
        return None
    if len(first) >= max(map(len, others)) * 2 / 3 or others[0][0].islower():
        return None
    return _Block(block.line + 1, others, block.indents[1:])


def _is_prose(lines: tuple[str, ...]) -> bool:
    # A long line or a sentence of five words or more: text, not a name, an address or a number.
    return any(len(line) > _PROSE_WIDTH or (line[-1] in ".!?…" and len(line.split()) >= 5) for line in lines)


def _ends_contacts(block: _Block, following: _Block | None) -> bool:
    if _is_prose(block.lines) or _SECTION_LABEL.fullmatch(block.lines[0]) is not None:
        return True
    return following is not None and _is_heading(block) and _is_prose(following.lines)


def _is_contact(lines: tuple[str, ...]) -> bool:
    # Short lines with an email address or a phone number, and no sentence: a contact block even unlabelled.
    return (
        len(lines) >= 2
        and all(len(line) <= _CONTACT_WIDTH and _list_marker(line) is None for line in lines)
        and not _is_prose(lines)
        and any(_EMAIL.search(line) or _PHONE.search(line) for line in lines)
    )


def _list_marker(line: str) -> tuple[str, int, str] | None:
    # ("ol", number, text) or ("ul", 0, text) when the line starts a list item.
    numbered = _NUMBERED.match(line)
    if numbered is not None:
        return "ol", int(numbered.group(1)), line[numbered.end() :]
    bullet = _BULLET.match(line)
    return ("ul", 0, line[bullet.end() :]) if bullet is not None else None


def _resumes(out: _Items, kind: str, number: int) -> bool:
    # Items split by blank lines are one list: the same bullets, or the next number.
    if not out or out[-1][0] != kind:
        return False
    return kind == "ul" or number == len(out[-1][1]) + 1


def _flow(block: _Block, hyphenated: frozenset[str], out: _Items, *, lead: bool = False) -> None:
    # Paragraphs and lists of one block, appended to `out`. A hyphen, en dash or "*" starts a list only at
    # the top of a block or after a line ending a sentence or a colon, so a dash in running text stays;
    # numbered lists start at 1. The lead's first line is always a paragraph (it gives the title).
    prose: list[str] = []
    items: list[list[str]] = []
    kind, number, indent = "", 0, 0
    resumed = False  # the items go on the list that ends `out` (the previous block's)
    for position, (line, line_indent) in enumerate(zip(block.lines, block.indents, strict=True)):
        marker = _list_marker(line)
        if marker is not None and not (lead and position == 0):
            new_kind, new_number, text = marker
            if kind == new_kind and (kind == "ul" or new_number == number + 1):
                items.append([text])
                number, indent = new_number, line_indent
                continue
            resumes = position == 0 and _resumes(out, new_kind, new_number)
            if resumes or _starts_list(
                new_kind, new_number, line, block.lines[position - 1] if position else None, kind
            ):
                _flush(out, prose, kind, items, hyphenated, resumed)
                kind, number, indent, items, resumed = new_kind, new_number, line_indent, [[text]], resumes
                continue
        if kind and _continues(items[-1][-1], line, indented=line_indent > indent):
            items[-1].append(line)
            continue
        if kind:
            _flush(out, prose, kind, items, hyphenated, resumed)
            kind, items, resumed = "", [], False
        prose.append(line)
    _flush(out, prose, kind, items, hyphenated, resumed)


def _starts_list(kind: str, number: int, line: str, previous: str | None, current: str) -> bool:
    if kind == "ol" and number != 1:
        return False
    if previous is None or current:
        return True
    return line[0] in _UNAMBIGUOUS_BULLETS or previous[-1] in _ITEM_ENDS


def _continues(last: str, line: str, *, indented: bool) -> bool:
    # An item goes on over lines that are indented, or that do not start a sentence after one ended.
    return indented or not (last[-1] in _ITEM_ENDS and not line[0].islower())


def _flush(
    out: _Items,
    prose: list[str],
    kind: str,
    items: list[list[str]],
    hyphenated: frozenset[str],
    resumed: bool,
) -> None:
    # Move the pending paragraph lines or list items to `out` (at most one of them is pending).
    if prose:
        out.extend(("p", [paragraph]) for paragraph in _paragraphs(tuple(prose), hyphenated))
        prose.clear()
    if kind and items:
        entries = [_join(item, hyphenated) for item in items]
        if resumed:
            out[-1][1].extend(entries)
        else:
            out.append((kind, entries))


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
    # Runs joined without a space are kept apart and only the end of the last one is searched, so a
    # paragraph of thousands of lines costs linear time, not quadratic.
    parts = [lines[0]]
    for line in lines[1:]:
        end = parts[-1]
        broken = _LINE_END_HYPHEN.search(end[-_WORD_TAIL:]) if end.endswith("-") else None
        next_word = re.match(r"\w+", line)
        if end.endswith("\u00ad"):
            parts[-1] = end[:-1] + line
        elif broken is None:
            parts.append(line)
        elif (
            broken.group(1).islower()
            and line[0].islower()
            and next_word is not None
            and f"{broken.group(1)}-{next_word.group()}".lower() not in hyphenated
        ):
            parts[-1] = end[:-1] + line
        else:
            parts[-1] = end + line
    return " ".join(parts).replace("\u00ad", "")


def _hyphenated(text: str) -> frozenset[str]:
    # Hyphenated words the text writes whole on one line somewhere: "well-known" stays "well-known".
    return frozenset(f"{a}-{b}".lower() for a, b in _HYPHEN_PAIR.findall(text))


def _headline(lead: str) -> str:
    # The lead's first sentence, without its final full stop, at most 300 characters.
    sentence = lead
    # A first sentence longer than a summary is cut to a title anyway: look no further (linear time).
    for match in _SENTENCE_END.finditer(lead, 0, _SUMMARY_LIMIT):
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


# ---- for other formats (HTML, Word) that apply the plain-text rules to their paragraphs -------------


def marker_language(line: str) -> str | None:
    """'fr' or 'en' when the line is only a "Communiqué de presse" / "Press release" marker, else None."""
    marker = _MARKER.fullmatch(line.strip())
    if marker is None:
        return None
    return "fr" if marker.group("fr") else "en"


def looks_like_title(text: str) -> bool:
    """The title-line rule: at most 300 characters, no '>' or lowercase start, no final .,;:…"""
    text = text.strip()
    if not text or len(text) > _TITLE_LIMIT:
        return False
    return text[0] != ">" and not text[0].islower() and text[-1] not in ".,;:…"


def headline(lead: str) -> str:
    """The title of a release without a title line: the lead's first sentence, at most 300 characters."""
    return _headline(lead)


def summary_of(lead: str) -> str:
    """The lead cut at a word boundary to the 2,000 characters a summary may have."""
    return _cut(lead, _SUMMARY_LIMIT)

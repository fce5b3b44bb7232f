"""HTML releases (.html, .htm): a page saved from a site or a CMS export -> metadata and sanitised HTML.

The release is the page's `<article>` (else `<main>`, else `<body>`) without the page around it
(navigation, headers, footers, asides, scripts, forms). Its title is the first `<h1>`, its date a
`<time datetime>`, a date `<meta>` tag or a dateline read with the plain-text rules. Word files are
converted to such a page first (see docx.py). docs/formats.md gives every rule.
"""

from __future__ import annotations

import codecs
import html
import itertools
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import lxml.html
from lxml import etree
from lxml.html import HtmlElement

from service.errors import AnnouncementError
from service.ingest.dateline import Dateline, lead_dateline, parse_dateline
from service.ingest.encoding import decode_as
from service.ingest.frontmatter import Document, Metadata, validate
from service.ingest.options import IngestOptions
from service.ingest.plaintext import headline, looks_like_title, marker_language, summary_of
from service.ingest.sanitize import clean_html, strip_illegal

NO_DATE_HINT = (
    "add a dateline such as 'Paris, 12 February 2020' before the first paragraph; a page may instead "
    'give <time datetime="2020-02-12"> or <meta name="date" content="2020-02-12">'
)
NO_TITLE_HINT = "add an <h1> heading, or in Word a paragraph in the Title style"
_BOMS = ((codecs.BOM_UTF8, "utf-8", "UTF-8"), (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16"),
         (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16"))  # fmt: skip
# <meta charset=x>, <meta http-equiv=Content-Type content="text/html; charset=x"> or an XML declaration.
_CHARSET = re.compile(
    rb"""(?:<meta\b[^>]*?\bcharset|<\?xml\b[^>]*?\bencoding)\s*=\s*["']?\s*([\w.:()+-]+)""", re.I
)
_CHARSET_WINDOW = 2048
# As browsers do (WHATWG Encoding): Latin-1 and ASCII labels mean Windows-1252, a UTF-16 label in a
# page that has no byte order mark means UTF-8; codecs that are not character sets are ignored.
_SAME_AS = {"iso8859-1": "cp1252", "ascii": "cp1252", "utf-16": "utf-8",
            "utf-16-le": "utf-8", "utf-16-be": "utf-8", "utf-32": "utf-8", "utf-32-le": "utf-8",
            "utf-32-be": "utf-8"}  # fmt: skip
_NOT_CHARSETS = frozenset({"utf-7", "unicode-escape", "raw-unicode-escape", "idna", "punycode", "undefined"})
_XML_DECLARATION = re.compile(r"\A\s*<\?xml[^>]*>")
_SPACES = re.compile(r"[ \t\n\r\f]+")  # HTML white space; a no-break space is text
_TITLE_SEPARATORS = (" | ", " - ", " \u2013 ", " \u2014 ")
# Not release text: the page around the release, scripts, and controls whose labels would leak as text.
_CHROME = ("nav", "aside", "footer", "script", "style", "noscript", "template", "form", "button",
           "select", "textarea", "iframe", "frame", "frameset", "object", "applet", "canvas", "svg",
           "dialog")  # fmt: skip
# Void in HTML5 but containers for libxml2, which nests the rest of their parent inside them.
_VOID = ("embed", "source", "track", "wbr", "keygen")
_BLOCKS = frozenset({"address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "figure",
                     "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "ol",
                     "p", "pre", "section", "table", "ul"})  # fmt: skip
_HEADER_BLOCKS = 5  # text blocks searched for a dateline, a marker and the lead
_HEADINGS = ("h2", "h3", "h4", "h5", "h6")
_RUNNING_TEXT = frozenset({"p", "li", "td", "th", "dd", "blockquote", "figcaption"})
# Date <meta> names (name= or property=, any case), the first found in this order wins.
DATE_META = ("article:published_time", "date", "dc.date", "dc.date.issued", "dcterms.date",
             "dcterms.issued", "citation_publication_date")  # fmt: skip
_ISO_DAY = re.compile(r"(\d{4})[-/](\d{2})[-/](\d{2})(?=$|[T ])")
_ISO_HINT = "use ISO 8601, e.g. 2020-02-12 or 2020-02-12T09:00:00+01:00"


def decode_html(raw: bytes, source: str, options: IngestOptions) -> str:
    """Decode a page: BOM, else the charset it declares in its first 2 KB, else UTF-8, else Windows-1252."""
    for bom, encoding, name in _BOMS:
        if raw.startswith(bom):
            text = decode_as(raw, len(bom), encoding, name, source, "save the file as UTF-8")
            break
    else:
        declared = _declared_charset(raw[:_CHARSET_WINDOW])
        if declared is not None:
            codec, label = declared
            hint = f"the page declares charset {label}: correct the declaration or save the file as UTF-8"
            text = decode_as(raw, 0, codec, f"{label} as declared", source, hint)
        else:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = decode_as(raw, 0, "cp1252", "UTF-8 or Windows-1252", source, "save the file as UTF-8")
    if "\x00" in text:
        raise AnnouncementError(
            source,
            "contains NUL bytes: this looks like a binary file",
            line=1,
            hint="save the page as UTF-8 (UTF-16 needs a byte order mark)",
        )
    return unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))


def _declared_charset(head: bytes) -> tuple[str, str] | None:
    # (Python codec, label as written); an unknown label is ignored, as browsers ignore it.
    match = _CHARSET.search(head)
    if match is None:
        return None
    label = match.group(1).decode("ascii")
    try:
        info = codecs.lookup(label)
    except LookupError:
        return None
    if info.name in _NOT_CHARSETS or not info._is_text_encoding:
        return None
    return _SAME_AS.get(info.name, info.name), label


# ---- parsing ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Header:
    """What the first paragraphs say: dateline, marker, a title before the lead, and the lead."""

    dateline: Dateline | None = None
    dateline_line: int | None = None
    marker_lang: str | None = None
    title: tuple[str, int, HtmlElement] | None = None  # text, line, element (dropped from the body)
    lead: str | None = None
    lead_line: int | None = None
    drop: list[HtmlElement] = field(default_factory=list)  # marker paragraphs


def parse_html(text: str, source: str, options: IngestOptions) -> tuple[Metadata, str]:
    """Parse a page into validated metadata and the sanitised HTML of the release it holds."""
    page = _parse(text, source)
    for element in list(page.iter(*_VOID)):
        element.drop_tag()  # keeps what libxml2 wrongly nested inside it
    for element in list(page.iter(*_CHROME)):
        _remove(element)
    containers = [e for e in (page.find(".//article"), page.find(".//main")) if e is not None]
    body = page.find("body")
    if body is None:  # a page of <head> only: its title and meta tags may still make a release
        body = page.makeelement("body")
        page.append(body)
    containers = containers or [body]
    h1 = _first_h1(containers)
    page_title = None if h1 else _page_title(page)
    header = _scan(containers[0], source, options, need_title=h1 is None and page_title is None)
    title = h1 or page_title or header.title or _lead_headline(header)
    if title is None:
        raise AnnouncementError(source, "no title found", hint=NO_TITLE_HINT)
    moment = _time_date(containers, source, options) or _meta_date(page, source, options)
    if moment is None and header.dateline is not None:
        moment = (header.dateline.moment, header.dateline_line or 1)
    if moment is None:
        raise AnnouncementError(source, "no date found", hint=NO_DATE_HINT)
    data: dict[str, Any] = {"title": title[0], "date": moment[0]}
    lines = {"title": title[1], "date": moment[1]}
    for key, found in (("summary", _description(page) or _lead(header)), ("lang", _lang(page, header))):
        if found is not None:
            data[key], lines[key] = found
    meta = validate(Document(data=data, lines=lines, body="", body_line=1), source, options)
    return meta, _body(containers[0], [title[2], *header.drop])


def _parse(text: str, source: str) -> HtmlElement:
    # lxml refuses a str that starts with an XML declaration (XHTML exports); blank it, keeping lines.
    text = _XML_DECLARATION.sub(lambda m: "\n" * m.group().count("\n"), strip_illegal(text))
    parser = lxml.html.HTMLParser(remove_comments=True, remove_pis=True, no_network=True)
    try:
        return lxml.html.document_fromstring(text, parser=parser)
    except (etree.ParserError, etree.XMLSyntaxError, ValueError):
        raise AnnouncementError(
            source, "no HTML content", line=1, hint="the file has no text or element"
        ) from None


def _first_h1(containers: list[HtmlElement]) -> tuple[str, int, HtmlElement] | None:
    for container in containers:
        for h1 in container.iter("h1"):
            text = " ".join(_lines(h1))
            if text:
                return text, h1.sourceline or 1, h1
    return None


def _page_title(page: HtmlElement) -> tuple[str, int, None] | None:
    # "Release | Section | Site" keeps its longest part; " - Site" goes when it is the site's name.
    element = page.find("head/title")
    if element is None:
        return None
    text = max(" ".join(_lines(element)).split(" | "), key=len).strip()
    site = _meta(page, "og:site_name") or _meta(page, "application-name")
    for separator in _TITLE_SEPARATORS if site else ():
        text = text.removesuffix(f"{separator}{site}").strip()
    return (text, element.sourceline or 1, None) if text else None


def _lead_headline(header: _Header) -> tuple[str, int, None] | None:
    if header.lead is None:
        return None
    return headline(header.lead), header.lead_line or 1, None


def _scan(root: HtmlElement, source: str, options: IngestOptions, *, need_title: bool) -> _Header:
    # The plain-text header rules over the first text blocks: datelines and markers anywhere among
    # them (a Word subtitle may come first), a title before the lead, the lead (the first paragraph).
    header = _Header()
    for block, lines in itertools.islice(_text_blocks(root), _HEADER_BLOCKS):
        if _header_block(block, lines, header, source, options):
            continue
        heading = block.tag in _HEADINGS
        if header.lead is None and need_title and header.title is None and (heading or _title_like(lines)):
            header.title = " ".join(lines), block.sourceline or 1, block
            continue
        if header.dateline is None:
            lines = _inline_dateline(block, lines, header, source, options)
        if header.lead is None and not heading:
            header.lead, header.lead_line = " ".join(lines), block.sourceline or 1
    return header


def _title_like(lines: list[str]) -> bool:
    return len(lines) <= 3 and looks_like_title(" ".join(lines))


def _text_blocks(root: HtmlElement) -> Iterator[tuple[HtmlElement, list[str]]]:
    # Paragraphs, headings and divisions that hold text directly (no block inside), in page order.
    for element in root.iter("p", "div", "address", *_HEADINGS):
        if element.tag == "div" and any(child.tag in _BLOCKS for child in element.iterdescendants()):
            continue
        lines = _lines(element)
        if lines:
            yield element, lines


def _header_block(
    block: HtmlElement, lines: list[str], header: _Header, source: str, options: IngestOptions
) -> bool:
    # True when every line is a dateline or a marker; markers are dropped from the body.
    datelines: list[Dateline] = []
    markers = 0
    for line in lines:
        dateline = parse_dateline(line, source, block.sourceline or 1, options)
        language = None if dateline else marker_language(line)
        if dateline is None and language is None:
            return False
        if dateline is not None:
            datelines.append(dateline)
        else:
            markers += 1
            header.marker_lang = header.marker_lang or language
    if datelines and header.dateline is None:
        header.dateline, header.dateline_line = datelines[0], block.sourceline or 1
    if markers and not datelines:
        header.drop.append(block)
    elif markers:  # "Paris, 12 February 2020<br>Press release": keep the dateline alone
        block.clear(keep_tail=True)
        block.text = " ".join(d.written for d in datelines)
    return True


def _inline_dateline(
    block: HtmlElement, lines: list[str], header: _Header, source: str, options: IngestOptions
) -> list[str]:
    # "Paris, 12 February 2020 - The group …": the dateline gives the date, the text after the dash stays.
    found = lead_dateline(lines[0], source, block.sourceline or 1, options)
    if found is None:
        return lines
    header.dateline, header.dateline_line = found[0], block.sourceline or 1
    return [found[1], *lines[1:]]


def _lines(element: HtmlElement) -> list[str]:
    # The element's text, one string per <br>-separated line, white space collapsed, blank lines dropped.
    parts: list[str] = []
    for event, node in etree.iterwalk(element, events=("start", "end")):
        if event == "start":
            parts.append("\n" if node.tag == "br" else _SPACES.sub(" ", node.text or ""))
        elif node is not element:
            parts.append(_SPACES.sub(" ", node.tail or ""))
    return [line for line in (part.strip() for part in "".join(parts).split("\n")) if line]


# ---- dates, summary, language --------------------------------------------------------------------------


def _time_date(containers: list[HtmlElement], source: str, options: IngestOptions) -> tuple[date, int] | None:
    # A <time> in a paragraph, list item, cell or quote is a date the text mentions, not the release's,
    # unless the paragraph is in a <header> ("By the press office, <time …>").
    for container in containers:
        for element in container.iter("time"):
            ancestors = {parent.tag for parent in element.iterancestors()}
            if ancestors & _RUNNING_TEXT and "header" not in ancestors:
                continue
            value = element.get("datetime") or " ".join(_lines(element))  # no attribute: the text
            found = _iso_date(value, "<time datetime>", element, source, options)
            if found is not None:
                return found
    return None


def _meta_date(page: HtmlElement, source: str, options: IngestOptions) -> tuple[date, int] | None:
    for name in DATE_META:
        for element in _metas(page, name):
            found = _iso_date(element.get("content", ""), f"<meta {name}>", element, source, options)
            if found is not None:
                return found
    return None


def _iso_date(
    value: str, where: str, element: HtmlElement, source: str, options: IngestOptions
) -> tuple[date, int] | None:
    # A value that does not start with a day (a year, a month, a duration) is not a release date.
    text = value.strip()
    line = element.sourceline or 1
    day = _ISO_DAY.match(text)
    if day is None:
        return None
    iso = "-".join(day.groups()) + text[day.end() :]
    try:
        moment = date.fromisoformat(iso) if day.end() == len(text) else datetime.fromisoformat(iso)
    except ValueError:
        raise AnnouncementError(
            source, f"{where} is not a valid date: {text[:40]!r}", line=line, hint=_ISO_HINT
        ) from None
    if isinstance(moment, datetime) and moment.tzinfo is None:
        moment = moment.replace(tzinfo=options.timezone)  # a floating time is the site's local time
    return moment, line


def _description(page: HtmlElement) -> tuple[str, int] | None:
    for element in _metas(page, "description"):
        text = _SPACES.sub(" ", element.get("content", "")).strip()
        if text:
            return summary_of(text), element.sourceline or 1
    return None


def _lead(header: _Header) -> tuple[str, int] | None:
    return (summary_of(header.lead), header.lead_line or 1) if header.lead else None


def _lang(page: HtmlElement, header: _Header) -> tuple[str, int] | None:
    # <html lang> (fr_FR is read as fr-FR), else what the marker or the dateline's month name says.
    written = (page.get("lang") or page.get("xml:lang") or "").strip().replace("_", "-")
    if written:
        return written, page.sourceline or 1
    spoken = header.marker_lang or (header.dateline.lang if header.dateline else None)
    return (spoken, header.dateline_line or 1) if spoken else None


def _metas(page: HtmlElement, name: str) -> list[HtmlElement]:
    return [
        element
        for element in page.iter("meta")
        if (element.get("name") or element.get("property") or "").strip().lower() == name
    ]


def _meta(page: HtmlElement, name: str) -> str | None:
    found = [_SPACES.sub(" ", e.get("content", "")).strip() for e in _metas(page, name)]
    return next((text for text in found if text), None)


# ---- body ---------------------------------------------------------------------------------------------


def _body(root: HtmlElement, drop: list[HtmlElement | None]) -> str:
    """The release's HTML: the root's content without its title, headers and marker, sanitised."""
    for element in [*drop, *root.iter("header")]:
        if element is not None and element is not root and element.getparent() is not None:
            _remove(element)
    for image in list(root.iter("img")):
        if image.get("src", "").strip().lower().startswith("data:"):
            _remove(image)  # the sanitiser would keep an <img> without its data: source
    for paragraph in list(root.iter("p")):
        if len(paragraph) == 0 and not (paragraph.text or "").strip():
            _remove(paragraph)  # spacing paragraphs (<p>&nbsp;</p>) of editors and word processors
    for child in root:  # one block a line, whatever the page's indentation
        if child.tail is not None and not child.tail.strip():
            child.tail = "\n"
    text = root.text if root.text and root.text.strip() else ""
    inner = html.escape(text, quote=False) + "".join(
        lxml.html.tostring(child, encoding="unicode") for child in root
    )
    return clean_html(inner).strip()


def _remove(element: HtmlElement) -> None:
    # Its text goes, and so does the white space after it: no runs of blank lines where it was.
    if element.tail is not None and not element.tail.strip():
        element.tail = None
    element.drop_tree()

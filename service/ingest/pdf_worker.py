"""Child process extracting one PDF's text: the PDF on stdin, the text (or a one-line error code) on stdout.

Run by service.ingest.pdf as `python -m service.ingest.pdf_worker MAX_PAGES MEMORY_BYTES CPU_SECONDS`.
Exit status 0: stdout is the UTF-8 text, paragraphs and headings separated by blank lines.
Exit status 2: stdout is one line, `encrypted`, `pages N`, `memory`, `unmapped` or
`unreadable DETAIL`. Any other status is a crash. Only the standard library and pdfminer.six are
imported here: this process starts once per PDF, and the service's own modules (settings,
pydantic) would double its start-up time.
"""

from __future__ import annotations

import itertools
import logging
import re
import resource
import statistics
import sys
import unicodedata
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from io import BytesIO

from pdfminer.converter import PDFPageAggregator
from pdfminer.layout import LAParams, LTChar, LTContainer, LTItem, LTTextBox, LTTextLine
from pdfminer.pdfdocument import PDFDocument, PDFEncryptionError
from pdfminer.pdfinterp import PDFPageInterpreter, PDFResourceManager
from pdfminer.pdfpage import PDFPage
from pdfminer.pdfparser import PDFParser

EXIT_REFUSED = 2
_GAP_BREAK = 0.4  # extra space above the page's usual line gap, in line heights, that ends a paragraph
_SIZE_BREAK = 0.15  # relative change of font size between two lines (a heading) that ends a paragraph
_FULL_LINE = 0.75  # a line at least this share of the page's usual width may continue on the next page
# Top and bottom share of the page for running headers, footers and folios; body text set with the
# usual 2.5 cm margins starts just outside it.
_RUNNING_BAND = 0.08
_ENDS_PARAGRAPH = tuple('.!?…:»”"')
_DASH = r"[-\u2013\u2014]?"
_OF_PAGES = r"(?:(?:/|of|sur|de|von)\s*\d{1,4})?"
_FOLIO = re.compile(rf"(?:page|p\.|seite)?\s*{_DASH}\s*\d{{1,4}}\s*{_OF_PAGES}\s*{_DASH}", re.I)
_BULLET = re.compile(r"[•●▪◦‣∙·*\u2013\u2014-]|\d{1,2}[.)]\s")
_UNMAPPED = re.compile(r"\(cid:\d+\)")
# Ligatures become letters (search, the hyphenation rule); Word's Symbol and Wingdings bullets come out
# as private-use characters, which the plain-text list rules would not know.
_GLYPHS = str.maketrans(
    {
        "ﬀ": "ff",
        "ﬁ": "fi",
        "ﬂ": "fl",
        "ﬃ": "ffi",
        "ﬄ": "ffl",
        "ﬅ": "st",
        "ﬆ": "st",
        "\uf0b7": "•",
        "\uf0a7": "▪",
    }
)


class Refused(Exception):
    """The PDF cannot be read; `code` is the one-line answer for the parent."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True, slots=True)
class Line:
    """One line of text on a page, in PDF points (y grows upwards); `size` is its usual font size."""

    text: str
    x0: float
    y0: float
    x1: float
    y1: float
    size: float

    @property
    def width(self) -> float:
        """Horizontal extent."""
        return self.x1 - self.x0


@dataclass(frozen=True, slots=True)
class Page:
    """The lines of one page in reading order (pdfminer's: column by column), and its vertical extent."""

    bottom: float
    top: float
    lines: tuple[Line, ...]


def main(argv: Sequence[str]) -> int:
    """Read the PDF on stdin and answer on stdout; see the module docstring."""
    max_pages, memory, cpu = int(argv[0]), int(argv[1]), int(argv[2])
    # The parent kills us at its wall-clock limit; these bound what we can cost before that.
    _cap(resource.RLIMIT_AS, memory)
    _cap(resource.RLIMIT_CPU, cpu)
    # pdfminer logs every damaged object: a hostile file could fill the parent's stderr buffer.
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    raw = sys.stdin.buffer.read()
    try:
        text = layout_text(extract(raw, max_pages))
    except Refused as exc:
        print(exc.code)
        return EXIT_REFUSED
    except MemoryError:
        print("memory")
        return EXIT_REFUSED
    sys.stdout.buffer.write(text.encode("utf-8", "ignore"))  # "ignore": lone surrogates from broken fonts
    return 0


def _cap(kind: int, value: int) -> None:
    # Never above a hard limit the service was started with (raising it would fail).
    _, hard = resource.getrlimit(kind)
    limit = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(kind, (limit, hard))


def extract(raw: bytes, max_pages: int) -> list[Page]:
    """The lines of every page; refuses encrypted, damaged and over-long documents."""
    try:
        document = PDFDocument(PDFParser(BytesIO(raw)), password="")
        if document.encryption is not None:
            raise Refused("encrypted")  # even with an empty password: protected on purpose
        pages = list(PDFPage.create_pages(document))
    except PDFEncryptionError:  # a wrong (non-empty) password, or an unknown cipher
        raise Refused("encrypted") from None
    except (Refused, MemoryError):
        raise
    except Exception as exc:  # pdfminer raises many types on damaged files; all mean the same here
        raise Refused(f"unreadable {_describe(exc)}") from None
    if len(pages) > max_pages:
        raise Refused(f"pages {len(pages)}")
    resources = PDFResourceManager()
    device = PDFPageAggregator(resources, laparams=LAParams(all_texts=True))
    interpreter = PDFPageInterpreter(resources, device)
    result: list[Page] = []
    unmapped = False
    for number, page in enumerate(pages, start=1):
        try:
            interpreter.process_page(page)
            layout = device.get_result()
        except MemoryError:
            raise
        except Exception as exc:
            raise Refused(f"unreadable page {number}: {_describe(exc)}") from None
        lines = []
        for line in _text_lines(layout):
            # "(cid:12)" is pdfminer's stand-in for a glyph its font gives no character for.
            text = _UNMAPPED.sub("", raw_text := line.get_text())
            unmapped = unmapped or text != raw_text
            if text.strip():
                lines.append(_line(line, text))
        result.append(Page(layout.y0, layout.y1, tuple(lines)))
    if unmapped and not any(page.lines for page in result):
        raise Refused("unmapped")
    return result


def _describe(exc: Exception) -> str:
    # pdfminer quotes the offending bytes: keep the message one printable line for logs and `check`.
    detail = "".join(c if c.isprintable() else "?" for c in " ".join(str(exc).split())[:120])
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _text_lines(container: Iterable[LTItem]) -> Iterator[LTTextLine]:
    for item in container:
        if isinstance(item, LTTextLine):  # a line pdfminer left out of every box (a lone glyph)
            yield item
        elif isinstance(item, LTTextBox):
            yield from (line for line in item if isinstance(line, LTTextLine))
        elif isinstance(item, LTContainer):  # figures (form XObjects) hold text boxes of their own
            yield from _text_lines(item)


def _line(line: LTTextLine, text: str) -> Line:
    sizes = Counter(round(char.size, 1) for char in line if isinstance(char, LTChar))
    size = sizes.most_common(1)[0][0] if sizes else line.height
    clean = unicodedata.normalize("NFC", text.translate(_GLYPHS)).strip()
    return Line(clean, line.x0, line.y0, line.x1, line.y1, size)


def layout_text(pages: Sequence[Page]) -> str:
    """The text of the pages: lines of a paragraph on consecutive lines, a blank line between paragraphs."""
    running = _running_texts(pages)
    paragraphs: list[list[str]] = []
    kept = [[line for line in page.lines if not _is_running(line, page, running)] for page in pages]
    gap = _usual_gap(kept)  # over the whole document: a page of one-line paragraphs has the same leading
    previous: tuple[Line, float] | None = None  # the last line kept, and its page's usual line width
    for lines in kept:
        width = _usual_width(lines)
        for index, line in enumerate(lines):
            following = lines[index + 1] if index + 1 < len(lines) else None
            if previous is None:
                paragraphs.append([line.text])
            elif index > 0 and _below(previous[0], line):
                if _starts_paragraph(previous[0], line, following, gap):
                    paragraphs.append([line.text])
                else:
                    paragraphs[-1].append(line.text)
            elif _continues(*previous):  # a new column or page: the text may flow on
                paragraphs[-1].append(line.text)
            else:
                paragraphs.append([line.text])
            previous = (line, width)
    return "\n\n".join("\n".join(lines) for lines in paragraphs) + ("\n" if paragraphs else "")


def _below(upper: Line, lower: Line) -> bool:
    # The next line of the same column: lower on the page and overlapping horizontally.
    overlap = min(upper.x1, lower.x1) - max(upper.x0, lower.x0)
    return lower.y1 < upper.y1 and lower.y0 < upper.y0 - 0.5 * lower.size and overlap > 0


def _usual_gap(pages: Sequence[Sequence[Line]]) -> float:
    # The space between the lines of a paragraph: a low quantile, as paragraph gaps are rarer.
    gaps = sorted(a.y0 - b.y1 for lines in pages for a, b in itertools.pairwise(lines) if _below(a, b))
    return gaps[len(gaps) // 4] if gaps else 0.0


def _usual_width(lines: Sequence[Line]) -> float:
    return statistics.median(line.width for line in lines) if lines else 0.0


def _starts_paragraph(upper: Line, line: Line, following: Line | None, usual_gap: float) -> bool:
    size = min(upper.size, line.size)
    if upper.y0 - line.y1 - usual_gap > _GAP_BREAK * size:
        return True
    if abs(upper.size - line.size) > _SIZE_BREAK * max(upper.size, line.size):
        return True
    # A first-line indent: this line starts further right and the next one comes back to the margin.
    indent = line.x0 - upper.x0
    back = following is None or not _below(line, following) or abs(following.x0 - upper.x0) < 0.25 * size
    return 0.5 * size < indent < 6 * size and back and not _BULLET.match(upper.text)


def _continues(last: Line, usual_width: float) -> bool:
    # A paragraph flows into the next column or page when its last line is full and ends no sentence.
    return not last.text.endswith(_ENDS_PARAGRAPH) and last.width >= _FULL_LINE * usual_width


def _band(line: Line, page: Page) -> str | None:
    margin = (page.top - page.bottom) * _RUNNING_BAND
    if line.y0 >= page.top - margin:
        return "top"
    if line.y1 <= page.bottom + margin:
        return "bottom"
    return None


def _running_key(line: Line, page: Page) -> tuple[str | None, str]:
    return _band(line, page), re.sub(r"\d+", "#", line.text.lower())


def _running_texts(pages: Sequence[Page]) -> frozenset[tuple[str | None, str]]:
    # Headers and footers: the same text (numbers aside) in the same band on two pages or more.
    seen = Counter(
        key for page in pages for key in {_running_key(line, page) for line in page.lines} if key[0]
    )
    return frozenset(key for key, count in seen.items() if count > 1)


def _is_running(line: Line, page: Page, running: frozenset[tuple[str | None, str]]) -> bool:
    key = _running_key(line, page)
    return key[0] is not None and (key in running or _FOLIO.fullmatch(line.text) is not None)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

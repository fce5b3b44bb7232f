"""PDF releases (.pdf): real PDFs made with reportlab, read by the real child process, no mocks."""

from __future__ import annotations

import io
import os
import re
import zlib
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reportlab.lib.pagesizes import A4
from reportlab.lib.pdfencrypt import StandardEncryption
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.utils import ImageReader, simpleSplit
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Spacer

from service.errors import AnnouncementError
from service.ingest import pdf
from service.ingest.frontmatter import Metadata
from service.ingest.options import IngestOptions
from service.ingest.pdf import DAMAGED_HINT, ENCRYPTED_HINT, NO_TEXT_HINT, UNMAPPED_HINT, pdf_to_text
from service.ingest.plaintext import extract, outline, parse_plaintext

DATA = Path(__file__).resolve().parents[1] / "data" / "plaintext"
PARIS = ZoneInfo("Europe/Paris")
OPTIONS = IngestOptions(PARIS, "en", 5_000_000)
SOURCE = "release.pdf"
SEED_LEAD = (
    "The Carnot Institutes Télécom & Société Numérique and M.I.N.E.S, in which the IMT schools are "
    "heavily involved, have again been awarded the Carnot label to develop R&D in companies for the "
    "benefit of the economy."
)
_STYLES = getSampleStyleSheet()
BODY = ParagraphStyle("body", parent=_STYLES["Normal"], fontSize=11, leading=14, spaceAfter=8)
HEADING = ParagraphStyle("heading", parent=_STYLES["Heading2"], fontSize=14, leading=18, spaceBefore=10)


def parse(raw: bytes, options: IngestOptions = OPTIONS) -> tuple[Metadata, str]:
    """Extract a PDF's text and parse it the way the reader does."""
    return parse_plaintext(pdf_to_text(raw, SOURCE, options), SOURCE, options)


def refused(raw: bytes, options: IngestOptions = OPTIONS) -> AnnouncementError:
    with pytest.raises(AnnouncementError) as info:
        pdf_to_text(raw, SOURCE, options)
    assert type(info.value) is AnnouncementError
    assert (info.value.file, info.value.line) == (SOURCE, None)
    return info.value


def paragraphs(html: str) -> list[str]:
    return re.findall(r"<p>(.*?)</p>", html, re.S)


def build(story: list[Flowable], on_page: Callable[[Canvas, object], None] | None = None) -> bytes:
    """A PDF laid out by reportlab's Platypus, as a word processor would (paragraph spacing, wrapping)."""
    buffer = io.BytesIO()
    document = SimpleDocTemplate(buffer, pagesize=A4, title="Release")
    if on_page is None:
        document.build(story)
    else:
        document.build(story, onFirstPage=on_page, onLaterPages=on_page)
    return buffer.getvalue()


def draw(pages: list[list[tuple[float, float, str]]], **canvas_options: object) -> bytes:
    """A PDF with each (x, y, text) line drawn where it says, one list per page."""
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4, **canvas_options)
    for lines in pages:
        canvas.setFont("Helvetica", 11)
        for x, y, text in lines:
            canvas.drawString(x, y, text)
        canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;")


def seed_pdf() -> bytes:
    """The seed release (tests/data/plaintext/seed.txt) as the PDF it was exported from."""
    blocks = [" ".join(block.split()) for block in re.split(r"\n\s*\n", (DATA / "seed.txt").read_text())]
    story: list[Flowable] = []
    for block in filter(None, blocks):
        text = block.removeprefix("> ")
        if text == "The Carnot label":
            story.append(Paragraph(text, HEADING))
        elif text.startswith("The Carnot label was created"):
            first, second = text.split("in response to their needs. ")
            story += [Paragraph(first + "in response to their needs.", BODY), Paragraph(second, BODY)]
        else:
            story.append(Paragraph(escape(text), BODY))
    return build(story)


SEED_PDF = seed_pdf()


def column_lines(prefix: str, count: int) -> list[str]:
    # Three paragraphs of words that say where they belong: "left2w17" is word 17 of left paragraph 2.
    return [
        f"{prefix}{p}w0 " + " ".join(f"{prefix}{p}w{w}" for w in range(1, count)) + "." for p in (1, 2, 3)
    ]


def two_columns(order: str) -> bytes:
    """A release whose body is set in two columns; the content stream runs in `order` (rows or columns)."""
    header = [(57.0, 790.0, "Paris, 12 February 2020"), (57.0, 766.0, "Press release")]
    header.append((57.0, 742.0, "The lead spans the page. It says what happened."))
    columns: list[list[tuple[float, float, str]]] = []
    for x, prefix in ((57.0, "left"), (312.0, "right")):
        y, lines = 700.0, []
        for paragraph in column_lines(prefix, 30):
            for line in simpleSplit(paragraph, "Helvetica", 11, 225):
                lines.append((x, y, line))
                y -= 14
            y -= 10  # paragraph spacing
        columns.append(lines)
    if order == "columns":
        return draw([header + columns[0] + columns[1]])
    by_row = sorted(columns[0] + columns[1], key=lambda line: (-line[1], line[0]))
    return draw([header + by_row])


# ---- the seed: same release as the .txt ---------------------------------------------------------------


def test_seed_pdf_gives_the_seed_release() -> None:
    meta, html = parse(SEED_PDF)
    assert meta.title == SEED_LEAD.removesuffix(".")  # the lead sentence
    assert meta.date.isoformat() == "2020-02-12T00:00:00+01:00"
    assert (meta.summary, meta.lang) == (SEED_LEAD, "en")
    assert outline(html) == ("Paris, February 12th 2020", ("The Carnot label",))
    assert "Press release" not in html
    texts = paragraphs(html)
    assert texts[0] == f"<em>Paris, February 12th 2020</em> — {escape(SEED_LEAD)}"
    assert len(texts) == 8
    assert texts[6].endswith("in response to their needs.")
    assert texts[7].startswith("The Carnot label is awarded to public research structures")
    assert "support the professionalization of business relations services, the internationalization" in html


def test_seed_pdf_text_has_blank_lines_between_paragraphs() -> None:
    text = pdf_to_text(SEED_PDF, SOURCE, OPTIONS)
    found = extract(text, 1, SOURCE, OPTIONS)
    assert found.dateline is not None
    assert found.dateline.place == "Paris"
    assert text.startswith("Paris, February 12th 2020\n\nPress release\n\nThe Carnot Institutes")
    assert "\n\nThe Carnot label\n\nThe Carnot label was created" in text
    assert len(text.split("\n\n")) == 11  # dateline, marker, 8 paragraphs and the heading


# ---- layout -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["rows", "columns"])
def test_two_columns_are_read_column_after_column(order: str) -> None:
    meta, html = parse(two_columns(order))
    assert meta.title == "The lead spans the page"
    expected = [*column_lines("left", 30), *column_lines("right", 30)]
    assert paragraphs(html)[1:] == expected  # each paragraph whole, left column first


def test_french_release_with_accents_and_hyphenated_lines() -> None:
    lines = [
        "Communiqué de presse",
        "",
        "Paris, le 12 février 2020",
        "",
        "Le label Carnot renouvelé pour deux instituts de l’IMT",
        "",
        "Les instituts Carnot Télécom & Société Numérique et M.I.N.E.S, où les écoles de",
        "l’IMT sont très impliquées, obtiennent à nouveau le label Carnot. Ils développeront",
        "la R&D en entreprise au bénéfice de l’économie.",
        "",
        "Le 7 février 2020, le ministère de l’Enseignement supérieur, de la Recherche et de",
        "l’Innovation a annoncé les lauréats. Le label récompense la très grande profes-",
        "sionnalisation des relations avec les entreprises de l’Institut Mines-",
        "Télécom.",
        "",
        "Le label Carnot",
        "",
        "Créé en 2006, le label Carnot développe la recherche partenariale des laboratoires.",
    ]
    raw = draw([[(57.0, 780.0 - 15 * row, line) for row, line in enumerate(lines) if line]])
    meta, html = parse(raw)
    assert (meta.title, meta.lang) == ("Le label Carnot renouvelé pour deux instituts de l’IMT", "fr")
    assert meta.date.isoformat() == "2020-02-12T00:00:00+01:00"
    assert outline(html) == ("Paris, le 12 février 2020", ("Le label Carnot",))
    assert "Communiqué" not in html
    assert "la très grande professionnalisation des relations" in html
    assert "de l’Institut Mines-Télécom.</p>" in html


def test_paragraph_continued_on_the_next_page_is_one_paragraph() -> None:
    def furniture(canvas: Canvas, document: object) -> None:
        # A running header and a folio on every page: neither belongs to the text.
        canvas.setFont("Helvetica", 9)
        canvas.drawString(72, 810, "IMT press office")
        canvas.drawString(280, 30, f"Page {canvas.getPageNumber()} of 2")

    long = "The ministry awarded the label, " + ", ".join(f"after review number {n}" for n in range(60))
    story: list[Flowable] = [
        Paragraph("Paris, 12 February 2020", BODY),
        Paragraph("The label is renewed. The institutes are pleased.", BODY),
        Spacer(1, 520),
        Paragraph(long + ", in the end.", BODY),
        Paragraph("A closing paragraph.", BODY),
    ]
    raw = build(story, furniture)
    text = pdf_to_text(raw, SOURCE, OPTIONS)
    assert "IMT press office" not in text
    assert "Page " not in text
    _, html = parse(raw)
    assert paragraphs(html)[1:] == [long + ", in the end.", "A closing paragraph."]


def test_first_line_indents_split_paragraphs_but_not_list_items() -> None:
    indented = ParagraphStyle("indented", parent=BODY, firstLineIndent=20, spaceAfter=0)
    item = ParagraphStyle("item", parent=BODY, leftIndent=18, bulletIndent=0, spaceAfter=0)
    first, second = " ".join(["first"] * 40) + ".", " ".join(["second"] * 40) + "."
    item_text = " ".join(["item"] * 30)
    story: list[Flowable] = [
        Paragraph("Paris, 12 February 2020", BODY),
        Paragraph(first, indented),  # no space between the paragraphs: only the indent tells
        Paragraph(second, indented),
        Spacer(1, 8),
        Paragraph(item_text, item, bulletText="•"),  # wraps at the item's indent, not the margin
        Spacer(1, 8),
        Paragraph("The end.", indented),
    ]
    text = pdf_to_text(build(story), SOURCE, OPTIONS)
    blocks = [" ".join(block.split()) for block in text.split("\n\n")]
    assert blocks == ["Paris, 12 February 2020", first, second, item_text, "The end."]


# ---- limits and hostile files --------------------------------------------------------------------------


def test_more_pages_than_the_limit_is_refused() -> None:
    raw = draw([[(57.0, 700.0, f"The {word} page.")] for word in ("first", "second", "third")])
    error = refused(raw, IngestOptions(PARIS, "en", 5_000_000, max_pages=2))
    assert (error.reason, error.hint) == (
        "the PDF has 3 pages; the limit is 2",
        "raise max_pages in config.yaml if this is intended",
    )
    assert pdf_to_text(raw, SOURCE, IngestOptions(PARIS, "en", 5_000_000, max_pages=3))


@pytest.mark.parametrize("password", ["", "secret"], ids=["empty-password", "password"])
def test_encrypted_pdf_is_refused(password: str) -> None:
    encryption = StandardEncryption(password, ownerPassword="owner", canCopy=0)
    raw = draw([[(57.0, 780.0, "Paris, 12 February 2020")]], encrypt=encryption)
    assert b"/Encrypt" in raw
    error = refused(raw)
    assert (error.reason, error.hint) == ("the PDF is encrypted", ENCRYPTED_HINT)
    assert error.describe() == (
        "release.pdf: the PDF is encrypted "
        "(export the PDF again without protection (no password, no permissions))"
    )


def test_truncated_pdf_is_refused() -> None:
    error = refused(SEED_PDF[: len(SEED_PDF) // 2])
    assert (error.reason, error.hint) == ("not a readable PDF (truncated: no %%EOF at the end)", DAMAGED_HINT)


def test_garbage_with_a_pdf_name_is_refused() -> None:
    error = refused(bytes(range(256)) * 40)
    assert (error.reason, error.hint) == ("not a readable PDF (no %PDF- header)", DAMAGED_HINT)


def test_damaged_pdf_body_is_refused() -> None:
    error = refused(b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\n%%EOF\n")
    assert error.reason == "not a readable PDF (PDFSyntaxError: No /Root object! - Is this really a PDF?)"
    assert error.hint == DAMAGED_HINT


def test_pdf_without_a_text_layer_is_refused() -> None:
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4)
    canvas.rect(72, 500, 300, 200, fill=1)
    pixels = io.BytesIO(b"P6 2 2 255 " + bytes(range(12)))  # a scanned page is an image like this
    canvas.drawImage(ImageReader(pixels), 72, 300, 100, 100)
    canvas.showPage()
    canvas.save()
    error = refused(buffer.getvalue())
    assert (error.reason, error.hint) == ("the PDF has no text layer (a scan?)", NO_TEXT_HINT)


def test_pdf_whose_glyphs_have_no_unicode_is_refused() -> None:
    # reportlab draws a list bullet as code 127 of WinAnsi Helvetica, which pdfminer cannot map.
    item = ParagraphStyle("item", parent=BODY, leftIndent=18, bulletIndent=0)
    error = refused(build([Paragraph("&nbsp;", item, bulletText="•") for _ in range(3)]))
    assert (error.reason, error.hint) == (
        "the PDF's fonts do not say which letters they draw (no Unicode mapping)",
        UNMAPPED_HINT,
    )


EDIT = st.tuples(st.integers(20, len(SEED_PDF) - 40), st.binary(min_size=1, max_size=8))
KNOWN_REFUSALS = ("not a readable PDF (", "the PDF has no text layer", "the PDF's fonts")


@settings(max_examples=12, deadline=None, database=None)
@given(st.lists(EDIT, max_size=6))
def test_damaged_bytes_give_text_or_an_announcement_error(edits: list[tuple[int, bytes]]) -> None:
    # Bytes overwritten anywhere between the header and the end marker: never another exception type.
    raw = bytearray(SEED_PDF)
    for offset, data in edits:
        raw[offset : offset + len(data)] = data
    outcome: str | AnnouncementError
    try:
        outcome = pdf_to_text(bytes(raw), SOURCE, OPTIONS)
    except AnnouncementError as error:
        outcome = error
    if isinstance(outcome, AnnouncementError):
        assert type(outcome) is AnnouncementError
        assert outcome.reason.startswith(KNOWN_REFUSALS)
    else:
        assert isinstance(outcome, str)


def children() -> set[int]:
    """Processes whose parent is this one, zombies included (a child not waited for is one)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
                found.add(int(entry.name))
    return found


def test_extraction_over_the_time_limit_is_refused_and_the_child_is_gone() -> None:
    before = children()
    error = refused(SEED_PDF, IngestOptions(PARIS, "en", 5_000_000, extract_seconds=0.001))
    assert (error.reason, error.hint) == (
        "reading the PDF took longer than 0.001 s",
        "raise extract_seconds in config.yaml if this is intended",
    )
    assert children() <= before


def bomb(inflated: int) -> bytes:
    """A one-page PDF whose content stream inflates to `inflated` bytes of spaces."""
    packer = zlib.compressobj(1)
    chunk = b" " * (1 << 20)
    stream = b"".join(packer.compress(chunk) for _ in range(inflated >> 20)) + packer.flush()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 5\n0000000000 65535 f \n" + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size 5 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def test_memory_cap_stops_a_decompression_bomb(monkeypatch: pytest.MonkeyPatch) -> None:
    # The cap is lowered so the bomb can be small: 256 MiB of spaces from 1 MB of file.
    monkeypatch.setattr(pdf, "MEMORY_LIMIT", 160 << 20)
    raw = bomb(256 << 20)
    assert len(raw) < OPTIONS.max_file_bytes
    error = refused(raw)
    assert (error.reason, error.hint) == (
        "reading the PDF needs more than 160 MiB of memory",
        "export the PDF again with smaller images",
    )

"""Word releases (.docx): real documents written with python-docx, converted and parsed, no mocks."""

from __future__ import annotations

import contextlib
import io
import os
import re
import struct
import zipfile
import zlib
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from docx import Document
from docx.document import Document as WordDocument
from docx.opc.constants import RELATIONSHIP_TYPE
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.text.paragraph import Paragraph
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.errors import AnnouncementError
from service.ingest.docx import docx_to_html
from service.ingest.frontmatter import Metadata
from service.ingest.htmlfile import NO_DATE_HINT, parse_html
from service.ingest.options import IngestOptions

PARIS = ZoneInfo("Europe/Paris")
OPTIONS = IngestOptions(PARIS, "en", 5_000_000)
SOURCE = "release.docx"
FEB_12 = datetime(2020, 2, 12, tzinfo=PARIS)
NOT_WORD = "not a Word document (not a zip archive, or a truncated one)"
NOT_WORD_HINT = "open it in Word and save it as a Word Document (.docx)"
BOMB_HINT = "this looks like a zip bomb; save the document again from Word"
SEED_LEAD = (
    "The Carnot Institutes Télécom & Société Numérique and M.I.N.E.S, in which the IMT schools are "
    "heavily involved, have again been awarded the Carnot label to develop R&D in companies for the "
    "benefit of the economy."
)
SEED_BODY = [
    "On 7 February 2020, the Ministry for Higher Education, Research and Innovation announced the Carnot "
    "label winners. Among the winners were Carnot Telecom & Société Numérique and Carnot M.I.N.E.S, which "
    "have both had the label since 2006, and have once again received the precious recognition of the "
    "quality of their research in partnership.",
    "Since 2006, this label has been encouraging partnerships between public research laboratories and "
    "companies in order to develop R&D, technology transfer and innovation.",
]
SEED_SECTION = (
    "The Carnot label was created in 2006, and is designed to develop the research partnerships. This "
    "means managing research work by public laboratories in partnership with socio-economic players, "
    "mainly companies (from SMEs to large groups), in response to their needs."
)
FRENCH_LEAD = (
    "Les instituts Carnot Télécom & Société Numérique et M.I.N.E.S, où les écoles de l’IMT sont très "
    "impliquées, obtiennent à nouveau le label Carnot."
)


def parse(raw: bytes, options: IngestOptions = OPTIONS) -> tuple[Metadata, str]:
    """Convert and parse a Word file the way the reader does: decoder, then parser."""
    return parse_html(docx_to_html(raw, SOURCE, options), SOURCE, options)


def refused(raw: bytes) -> AnnouncementError:
    with pytest.raises(AnnouncementError) as info:
        parse(raw)
    assert type(info.value) is AnnouncementError
    assert info.value.file == SOURCE
    return info.value


def saved(document: WordDocument) -> bytes:
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def escaped(text: str) -> str:
    return text.replace("&", "&amp;")


def add_link(paragraph: Paragraph, text: str, url: str) -> None:
    """A real Word hyperlink: an external relationship and a w:hyperlink run (python-docx has no API)."""
    link = OxmlElement("w:hyperlink")
    link.set(qn("r:id"), paragraph.part.relate_to(url, RELATIONSHIP_TYPE.HYPERLINK, is_external=True))
    run = OxmlElement("w:r")
    run_text = OxmlElement("w:t")
    run_text.text = text
    run.append(run_text)
    link.append(run)
    paragraph._p.append(link)


def seed_docx() -> bytes:
    """The seed release (tests/data/plaintext/seed.txt) as a press office would type it in Word."""
    document = Document()
    document.add_paragraph("Paris, February 12th 2020")
    document.add_paragraph("Press release")
    document.add_paragraph(SEED_LEAD)
    for text in SEED_BODY:
        document.add_paragraph(text)
    document.add_heading("The Carnot label", level=1)
    document.add_paragraph(SEED_SECTION)
    return saved(document)


SEED = seed_docx()


def png() -> bytes:
    """A valid 1x1 PNG, for a picture in a document."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    return (
        b"\x89PNG\r\n\x1a\n"
        + header
        + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
        + chunk(b"IEND", b"")
    )


def rich_docx() -> bytes:
    """Title and Subtitle styles, headings, bullets, numbers, a table, links, emphasis and a picture."""
    document = Document()
    document.add_paragraph("Two Carnot institutes keep their label", style="Title")
    document.add_paragraph("IMT’s research partnerships are recognised again", style="Subtitle")
    document.add_paragraph("Paris, 12 February 2020")
    lead = document.add_paragraph("The Carnot Institutes have again been awarded the ")
    lead.add_run("Carnot label").bold = True
    lead.add_run(", for the ")
    lead.add_run("fourth").italic = True
    lead.add_run(" time.")
    document.add_heading("The winners", level=1)
    document.add_paragraph("Carnot Télécom & Société Numérique", style="List Bullet")
    document.add_paragraph("Carnot M.I.N.E.S", style="List Bullet")
    document.add_heading("Next steps", level=2)
    document.add_paragraph("Sign the agreement", style="List Number")
    document.add_paragraph("Fund the projects", style="List Number")
    table = document.add_table(rows=2, cols=2)
    for cell, text in zip(table._cells, ["Institute", "Schools", "M.I.N.E.S", "5"], strict=True):
        cell.text = text
    document.add_picture(io.BytesIO(png()))
    links = document.add_paragraph("Read the ")
    add_link(links, "announcement", "https://www.enseignementsup-recherche.gouv.fr/")
    links.add_run(" (not ")
    add_link(links, "this one", "javascript:alert(1)")
    links.add_run(").")
    return saved(document)


RICH_BODY = (
    "<p>IMT’s research partnerships are recognised again</p>\n"
    "<p>Paris, 12 February 2020</p>\n"
    "<p>The Carnot Institutes have again been awarded the <strong>Carnot label</strong>, for the "
    "<em>fourth</em> time.</p>\n"
    "<h2>The winners</h2>\n"
    "<ul><li>Carnot Télécom &amp; Société Numérique</li><li>Carnot M.I.N.E.S</li></ul>\n"
    "<h3>Next steps</h3>\n"
    "<ol><li>Sign the agreement</li><li>Fund the projects</li></ol>\n"
    "<table><tbody><tr><td><p>Institute</p></td><td><p>Schools</p></td></tr>"
    "<tr><td><p>M.I.N.E.S</p></td><td><p>5</p></td></tr></tbody></table>\n"
    "<p>Read the "
    '<a href="https://www.enseignementsup-recherche.gouv.fr/" rel="noopener noreferrer">announcement</a>'
    ' (not <a rel="noopener noreferrer">this one</a>).</p>'
)


def french_docx(dateline_in_lead: bool = False) -> bytes:
    document = Document()
    document.add_paragraph("Communiqué de presse")
    if not dateline_in_lead:
        document.add_paragraph("Paris, le 12 février 2020")
    document.add_paragraph().add_run("Le label Carnot renouvelé pour deux instituts de l’IMT").bold = True
    prefix = "Paris, le 12 février 2020 \u2013 " if dateline_in_lead else ""
    document.add_paragraph(prefix + FRENCH_LEAD)
    document.add_heading("Le label Carnot", level=1)
    document.add_paragraph("Créé en 2006, le label Carnot développe la recherche partenariale.")
    return saved(document)


def rezip(raw: bytes, parts: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    """The same archive with some parts' content replaced, and new parts added."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw)) as source, zipfile.ZipFile(out, "w", method) as target:
        for name in source.namelist():
            target.writestr(name, parts.get(name, source.read(name)))
        for name in parts.keys() - set(source.namelist()):
            target.writestr(name, parts[name])
    return out.getvalue()


def central_entry(raw: bytes, name: str) -> int:
    """Where a part's central directory entry starts (its name is at offset 46)."""
    entry = raw.index(b"PK\x01\x02")
    while raw[entry + 46 : entry + 46 + len(name)] != name.encode():
        entry = raw.index(b"PK\x01\x02", entry + 4)
    return entry


def patched(raw: bytes, name: str, offset: int, value: bytes) -> bytes:
    """Overwrite a field of one part's central directory entry, as a forged archive would."""
    at = central_entry(raw, name) + offset
    return raw[:at] + value + raw[at + len(value) :]


# ---- releases --------------------------------------------------------------------------------------------


def test_seed_release_typed_in_word() -> None:
    meta, body = parse(seed_docx())
    assert meta.title == SEED_LEAD.removesuffix(".")  # no title line: the lead's first sentence
    assert (meta.date, meta.lang, meta.summary) == (FEB_12, "en", SEED_LEAD)
    assert meta.date.isoformat() == "2020-02-12T00:00:00+01:00"
    assert body == "\n".join(
        [
            "<p>Paris, February 12th 2020</p>",
            f"<p>{escaped(SEED_LEAD)}</p>",
            *(f"<p>{escaped(text)}</p>" for text in SEED_BODY),
            "<h2>The Carnot label</h2>",
            f"<p>{SEED_SECTION}</p>",
        ]
    )


def test_word_core_properties_are_not_the_release_date() -> None:
    document = Document()
    document.core_properties.created = datetime(2021, 5, 4)
    document.core_properties.modified = datetime(2021, 5, 5)
    document.core_properties.title = "Template press release"
    document.add_paragraph("The lead of a release without a dateline.")
    error = refused(saved(document))
    assert (error.reason, error.hint, error.line) == ("no date found", NO_DATE_HINT, None)


def test_title_style_headings_lists_table_and_links() -> None:
    meta, body = parse(rich_docx())
    assert meta.title == "Two Carnot institutes keep their label"  # the Title style
    assert meta.summary == "IMT’s research partnerships are recognised again"  # the first paragraph
    assert (meta.date, meta.lang) == (FEB_12, "en")
    assert body == RICH_BODY  # the picture is not carried over; the javascript: link loses its target


def test_french_release_with_a_title_line() -> None:
    meta, body = parse(french_docx())
    assert meta.title == "Le label Carnot renouvelé pour deux instituts de l’IMT"
    assert (meta.date, meta.lang, meta.summary) == (FEB_12, "fr", FRENCH_LEAD)
    assert body == "\n".join(
        [
            "<p>Paris, le 12 février 2020</p>",
            f"<p>{escaped(FRENCH_LEAD)}</p>",
            "<h2>Le label Carnot</h2>",
            "<p>Créé en 2006, le label Carnot développe la recherche partenariale.</p>",
        ]
    )


def test_french_dateline_starting_the_lead() -> None:
    meta, body = parse(french_docx(dateline_in_lead=True))
    assert (meta.date, meta.lang, meta.summary) == (FEB_12, "fr", FRENCH_LEAD)
    assert body.startswith(f"<p>Paris, le 12 février 2020 \u2013 {escaped(FRENCH_LEAD)}</p>")


def test_the_html_has_one_block_per_line_so_errors_give_the_paragraph_number() -> None:
    document = Document()
    document.add_paragraph("Press release")
    document.add_paragraph("A title", style="Title")
    document.add_paragraph("Paris, 31/02/2020")
    html = docx_to_html(saved(document), SOURCE, OPTIONS)
    assert html.splitlines()[2].startswith("<p>Paris, 31/02/2020</p>")
    error = refused(saved(document))
    assert (error.reason, error.line) == ("the dateline gives an impossible date: '31/02/2020'", 3)


def test_a_document_without_text_has_no_title() -> None:
    document = Document()
    document.add_paragraph("12 February 2020")
    error = refused(saved(document))
    assert error.reason == "no title found"


def test_empty_paragraphs_and_line_breaks() -> None:
    document = Document()
    document.add_paragraph("")
    header = document.add_paragraph("Paris, 12 February 2020")
    header.add_run().add_break()
    header.add_run("Press release")
    document.add_paragraph("   ")
    document.add_paragraph("The lead.")
    meta, body = parse(saved(document))
    assert (meta.date, meta.title, meta.summary) == (FEB_12, "The lead", "The lead.")
    assert body == "<p>Paris, 12 February 2020</p>\n<p>The lead.</p>"


# ---- damaged and hostile files -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\n \n", id="blank"),
        pytest.param(b"Paris, 12 February 2020\n\nA text file named .docx\n", id="text"),
        pytest.param(b"%PDF-1.7\n", id="pdf"),
        pytest.param(SEED[: len(SEED) // 2], id="truncated-half"),
        pytest.param(SEED[:-10], id="truncated-end"),
    ],
)
def test_not_a_zip_archive(raw: bytes) -> None:
    error = refused(raw)
    assert (error.reason, error.hint, error.line) == (NOT_WORD, NOT_WORD_HINT, None)


def test_old_doc_or_password_protected_file() -> None:
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504) + "EncryptedPackage".encode("utf-16-le")
    error = refused(ole)
    assert error.reason == "is password-protected or an old .doc file"
    assert error.hint == (
        "remove the password (File > Info > Protect Document) and save as a Word Document (.docx)"
    )


def test_zip_bomb_is_refused_from_its_declared_sizes() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("word/document.xml", "w") as part:
            for _ in range(200):
                part.write(b" " * 1_000_000)  # 200 MB of spaces
        archive.writestr("[Content_Types].xml", "<Types/>")
    raw = out.getvalue()
    assert len(raw) < 1_000_000
    error = refused(raw)
    assert error.reason == "the Word document expands to 200000008 bytes; the limit is 100000000"
    assert error.hint == BOMB_HINT


def test_expansion_limit_follows_max_file_bytes() -> None:
    raw = rezip(SEED, {"word/media/padding.bin": os.urandom(300_000)})
    small = IngestOptions(PARIS, "en", 10_000)
    with pytest.raises(AnnouncementError) as info:
        docx_to_html(raw, SOURCE, small)
    assert re.fullmatch(r"the Word document expands to \d+ bytes; the limit is 200000", info.value.reason)


def test_highly_compressed_part_is_refused() -> None:
    raw = rezip(SEED, {"word/document.xml": b" " * 5_000_000})
    info = next(i for i in zipfile.ZipFile(io.BytesIO(raw)).infolist() if i.filename == "word/document.xml")
    error = refused(raw)
    ratio = round(5_000_000 / info.compress_size)
    assert error.reason == f"part 'word/document.xml' is compressed {ratio} to 1; the limit is 200 to 1"
    assert error.hint == BOMB_HINT


def test_too_many_parts_is_refused() -> None:
    raw = rezip(SEED, {f"customXml/item{n}.xml": b"<a/>" for n in range(2_000)})
    error = refused(raw)
    assert re.fullmatch(r"the Word document has 20\d\d parts; the limit is 2000", error.reason)


def test_too_much_xml_is_refused_before_mammoth_reads_it() -> None:
    noise = os.urandom(5_500_000).hex().encode()  # 11 MB that does not compress much
    raw = rezip(SEED, {"word/glossary/document.xml": noise}, zipfile.ZIP_STORED)
    error = refused(raw)
    assert re.fullmatch(
        r"the Word document has \d+ bytes of text and markup; the limit is 10000000", error.reason
    )


def test_a_part_larger_than_declared_fails_its_check_instead_of_expanding() -> None:
    document = zipfile.ZipFile(io.BytesIO(SEED)).read("word/document.xml") + b" " * 3_000_000
    raw = rezip(SEED, {"word/document.xml": document})
    lying = patched(raw, "word/document.xml", 24, struct.pack("<I", 2_000))  # uncompressed size
    error = refused(lying)
    assert error.reason == "cannot read the Word document (Bad CRC-32 for file 'word/document.xml')"
    assert error.hint == NOT_WORD_HINT


def test_encrypted_zip_parts_are_refused() -> None:
    at = central_entry(SEED, "word/document.xml") + 8
    flags = struct.unpack("<H", SEED[at : at + 2])[0]
    error = refused(patched(SEED, "word/document.xml", 8, struct.pack("<H", flags | 1)))
    assert error.reason == "is password-protected (encrypted zip parts)"


def test_damaged_part_data_is_refused() -> None:
    raw = bytearray(SEED)
    start = raw.index(b"word/document.xml") + 40  # inside the compressed XML
    raw[start : start + 200] = bytes(200)
    error = refused(bytes(raw))
    assert error.reason.startswith("cannot read the Word document (")
    assert error.hint == NOT_WORD_HINT


def test_a_zip_that_is_not_a_word_document() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        archive.writestr("content.xml", "<office:document-content/>")
    error = refused(out.getvalue())
    assert error.reason == (
        "cannot read the Word document (Could not find main document part. Are you sure this is a valid "
        ".docx file?)"
    )


def test_xml_entity_expansion_is_refused() -> None:
    lol = b'<!ENTITY a0 "lollollollollollollollollollol">' + b"".join(
        f'<!ENTITY a{n} "{("&a" + str(n - 1) + ";") * 10}">'.encode() for n in range(1, 10)
    )
    document = zipfile.ZipFile(io.BytesIO(SEED)).read("word/document.xml")
    bomb = document.replace(b"?>", b"?><!DOCTYPE w:document [" + lol + b"]>", 1).replace(
        b"Press release", b"&a9;"
    )
    error = refused(rezip(SEED, {"word/document.xml": bomb}))
    assert error.reason.startswith("cannot read the Word document (limit on input amplification factor")


def test_external_entities_are_not_read() -> None:
    document = zipfile.ZipFile(io.BytesIO(SEED)).read("word/document.xml")
    xxe = document.replace(
        b"?>", b'?><!DOCTYPE w:document [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>', 1
    ).replace(b"Press release", b"&xxe;")
    assert parse(rezip(SEED, {"word/document.xml": xxe})) == parse(SEED)  # the entity is left out


def test_hidden_text_is_not_published() -> None:
    document = Document()
    document.add_paragraph("Paris, 12 February 2020")
    lead = document.add_paragraph("The lead")
    lead.add_run(" (check the figures with Legal!)").font.hidden = True
    lead.add_run(".")
    shown = document.add_paragraph("Shown")
    shown.add_run(" again").font.hidden = False  # <w:vanish w:val="0"/>
    document.add_paragraph().add_run("An internal note.").font.hidden = True
    meta, body = parse(saved(document))
    assert (meta.title, meta.summary) == ("The lead", "The lead.")
    assert body == "<p>Paris, 12 February 2020</p>\n<p>The lead.</p>\n<p>Shown again</p>"


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_damaged_documents_give_a_release_or_an_announcement_error(data: st.DataObject) -> None:
    raw = bytearray(SEED)
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(AnnouncementError):
        parse(bytes(raw))

"""Word releases (.docx): check the archive, convert it with mammoth, then read it as an HTML page.

A .docx file is a zip archive of XML parts. It is checked before mammoth opens it, because a small
hostile file can claim gigabytes once inflated. The HTML page that comes out has one top-level block
(paragraph, heading, list, table) per line, so an error's line number is the block's number.
"""

from __future__ import annotations

import html
import io
import zipfile

import lxml.html
import mammoth  # type: ignore[import-untyped]
from lxml import etree

from service.errors import AnnouncementError
from service.ingest.options import IngestOptions

_OLE = b"\xd0\xcf\x11\xe0"  # Word 97-2003 .doc files, and .docx files that Word encrypted with a password
_MAX_PARTS = 2_000
_MAX_EXPANDED = 100_000_000  # bytes, all parts together; 20 x max_file_bytes when that is less
# mammoth builds a Python object per XML node: about 2 MB of XML a second and 20 times its size in
# memory. A long press release is under 1 MB of XML.
_MAX_XML = 10_000_000
_MAX_RATIO = 200  # plain XML compresses about 10:1; hundreds to one is padding
_RATIO_FROM = 1_000_000  # smaller parts cannot do harm, whatever their ratio
# Runs whose font is hidden, in transitional and strict OOXML ("0", "false" or "off" show the text).
_WORD = {"w": "http://schemas.openxmlformats.org/wordprocessingml/2006/main",
         "s": "http://purl.oclc.org/ooxml/wordprocessingml/main"}  # fmt: skip
_HIDDEN_RUNS = " | ".join(
    f"//{ns}:r[{ns}:rPr/{ns}:vanish[not(@{ns}:val = '0' or @{ns}:val = 'false' or @{ns}:val = 'off')]]"
    for ns in _WORD
)
_NOT_WORD_HINT = "open it in Word and save it as a Word Document (.docx)"
_BOMB_HINT = "this looks like a zip bomb; save the document again from Word"
# Word's Title style is the release title; Word's headings sit one level below it, as in a page.
_STYLE_MAP = "\n".join(
    [
        "p[style-name='Title'] => h1:fresh",
        "p[style-name='Subtitle'] => p:fresh",
        "p[style-name='Heading'] => h2:fresh",
        *(f"p[style-name='Heading {n}'] => h{min(n + 1, 6)}:fresh" for n in range(1, 10)),
        *(f"p[style-name='heading {n}'] => h{min(n + 1, 6)}:fresh" for n in range(1, 10)),
    ]
)


def docx_to_html(raw: bytes, source: str, options: IngestOptions) -> str:
    """Convert a Word document into an HTML page for parse_html, one top-level block per line."""
    _check_archive(raw, source, options)
    try:
        result = mammoth.convert_to_html(
            io.BytesIO(_without_hidden_text(raw)),
            style_map=_STYLE_MAP,
            convert_image=_no_image,
            external_file_access=False,  # never open files or URLs the document points to
            include_embedded_style_map=False,
        )
        blocks = lxml.html.fragments_fromstring(result.value) if result.value.strip() else []
    except Exception as exc:  # mammoth and zipfile raise many kinds for a damaged file; all mean the same
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise AnnouncementError(
            source, f"cannot read the Word document ({reason})", hint=_NOT_WORD_HINT
        ) from None
    lines = [
        html.escape(b) if isinstance(b, str) else lxml.html.tostring(b, encoding="unicode") for b in blocks
    ]
    return '<html><head><meta charset="utf-8"></head><body>' + "\n".join(lines) + "</body></html>\n"


def _without_hidden_text(raw: bytes) -> bytes:
    # Hidden text (Font > Hidden, <w:vanish/>) is for the author's eyes; mammoth would publish it.
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        xml = [info for info in archive.infolist() if info.filename.lower().endswith(".xml")]
        hiding = {info.filename: data for info in xml if b"vanish" in (data := archive.read(info))}
        if not hiding:
            return raw
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as copy:
            for info in archive.infolist():
                hidden = hiding.get(info.filename)
                copy.writestr(
                    info.filename, archive.read(info) if hidden is None else _drop_hidden_runs(hidden)
                )
    return out.getvalue()


def _drop_hidden_runs(xml: bytes) -> bytes:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    root = etree.fromstring(xml, parser)
    for run in root.xpath(_HIDDEN_RUNS, namespaces=_WORD):
        parent = run.getparent()
        if parent is not None:
            parent.remove(run)
    return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8", standalone=True)


def _no_image(image: object) -> list[object]:
    # Images are not carried over: mammoth would inline them as data: URLs, which the sanitiser drops.
    return []


def _check_archive(raw: bytes, source: str, options: IngestOptions) -> None:
    if raw.startswith(_OLE):
        raise AnnouncementError(
            source,
            "is password-protected or an old .doc file",
            hint="remove the password (File > Info > Protect Document) and save as a Word Document (.docx)",
        )
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            parts = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise AnnouncementError(
            source, "not a Word document (not a zip archive, or a truncated one)", hint=_NOT_WORD_HINT
        ) from None
    if len(parts) > _MAX_PARTS:
        raise AnnouncementError(
            source, f"the Word document has {len(parts)} parts; the limit is {_MAX_PARTS}", hint=_BOMB_HINT
        )
    if any(part.flag_bits & 0x1 for part in parts):
        raise AnnouncementError(source, "is password-protected (encrypted zip parts)", hint=_NOT_WORD_HINT)
    _check_sizes(parts, source, options)


def _check_sizes(parts: list[zipfile.ZipInfo], source: str, options: IngestOptions) -> None:
    # The declared sizes can be trusted: zipfile stops at the declared size and then fails the CRC check.
    limit = min(20 * options.max_file_bytes, _MAX_EXPANDED)
    expanded = sum(part.file_size for part in parts)
    if expanded > limit:
        raise AnnouncementError(
            source, f"the Word document expands to {expanded} bytes; the limit is {limit}", hint=_BOMB_HINT
        )
    xml = sum(part.file_size for part in parts if part.filename.lower().endswith((".xml", ".rels")))
    if xml > _MAX_XML:
        raise AnnouncementError(
            source,
            f"the Word document has {xml} bytes of text and markup; the limit is {_MAX_XML}",
            hint="split it, or publish it as a PDF attachment of a shorter release",
        )
    for part in parts:
        ratio = part.file_size / max(part.compress_size, 1)
        if part.file_size > _RATIO_FROM and ratio > _MAX_RATIO:
            raise AnnouncementError(
                source,
                f"part {part.filename!r} is compressed {ratio:.0f} to 1; the limit is {_MAX_RATIO} to 1",
                hint=_BOMB_HINT,
            )

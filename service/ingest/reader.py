"""Read one release file into an Announcement: decode, parse by format, resolve attachments."""

from __future__ import annotations

import codecs
import hashlib
import mimetypes
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from service.errors import AnnouncementError
from service.ingest.docx import docx_to_html
from service.ingest.encoding import decode_as
from service.ingest.frontmatter import Metadata
from service.ingest.htmlfile import decode_html, parse_html
from service.ingest.markdown import parse_markdown
from service.ingest.options import IngestOptions
from service.ingest.pdf import pdf_to_text
from service.ingest.plaintext import parse_plaintext
from service.ingest.sanitize import first_paragraph_text
from service.models import Announcement, Attachment

Parser = Callable[[str, str, IngestOptions], tuple[Metadata, str]]
Decoder = Callable[[bytes, str, IngestOptions], str]  # bytes -> text the parser reads (decode, extract)
# Markdown must be UTF-8; plain text is often whatever a word processor or PDF export wrote.
_BOMS = ((codecs.BOM_UTF8, "utf-8", "UTF-8"), (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16"),
         (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16"))  # fmt: skip
_SLUG_DROP = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True, slots=True)
class Format:
    """How one kind of release file becomes an Announcement."""

    decode: Decoder
    parse: Parser
    rank: int  # of files sharing a name, the lowest rank is the release and the others its attachments
    attach_self: bool = False  # the file itself is published with the release (the original PDF)


def is_release_file(path: Path) -> bool:
    """True for the file formats the service can parse."""
    return path.suffix.lower() in FORMATS


def format_rank(name: str) -> int | None:
    """The rank of a release file name's format (lower is preferred), None for other files."""
    kind = FORMATS.get(PurePosixPath(name).suffix.lower())
    return kind.rank if kind is not None else None


def slugify(text: str) -> str:
    """Lowercase ASCII words joined by '-' (accents folded), at most 128 characters."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return _SLUG_DROP.sub("-", ascii_text).strip("-")[:128].rstrip("-")


def decode(raw: bytes, source: str, options: IngestOptions | None = None) -> str:
    """Decode UTF-8 (a BOM is allowed) and normalise line endings; say where invalid bytes are."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = exc.start + (len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0)
        line = raw[:start].replace(b"\r\n", b"\n").replace(b"\r", b"\n").count(b"\n") + 1
        raise AnnouncementError(
            source,
            f"not valid UTF-8 (byte 0x{raw[start]:02x} at offset {start})",
            line=line,
            hint="save the file as UTF-8",
        ) from None
    if "\x00" in text:
        raise AnnouncementError(source, "contains NUL bytes: this looks like a binary file", line=1)
    return text.replace("\r\n", "\n").replace("\r", "\n")


def decode_text(raw: bytes, source: str, options: IngestOptions | None = None) -> str:
    """Decode a plain-text release: a BOM decides (UTF-8, UTF-16 LE or BE), else UTF-8, else Windows-1252.

    Line endings become '\n' and the text is normalised to NFC.
    """
    for bom, encoding, name in _BOMS:
        if raw.startswith(bom):
            text = decode_as(raw, len(bom), encoding, name, source)
            break
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = decode_as(raw, 0, "cp1252", "UTF-8 or Windows-1252", source)
    if "\x00" in text:
        raise AnnouncementError(
            source,
            "contains NUL bytes: this looks like a binary file",
            line=1,
            hint="save the text as UTF-8 (UTF-16 needs a byte order mark)",
        )
    return unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))


_CONTENT_TYPES = {
    ".pdf": "application/pdf", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
    ".gif": "image/gif", ".webp": "image/webp", ".svg": "image/svg+xml", ".txt": "text/plain",
    ".md": "text/markdown", ".html": "text/html", ".htm": "text/html", ".csv": "text/csv",
    ".zip": "application/zip", ".mp3": "audio/mpeg", ".mp4": "video/mp4",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".odt": "application/vnd.oasis.opendocument.text", ".doc": "application/msword",
}  # fmt: skip

# Markdown first: the most editable form of a release wins over exports of it.
FORMATS: dict[str, Format] = {
    ".md": Format(decode, parse_markdown, 0),
    ".markdown": Format(decode, parse_markdown, 0),
    ".txt": Format(decode_text, parse_plaintext, 1),
    ".html": Format(decode_html, parse_html, 2),
    ".htm": Format(decode_html, parse_html, 2),
    ".docx": Format(docx_to_html, parse_html, 3),
    ".pdf": Format(pdf_to_text, parse_plaintext, 4, attach_self=True),  # the original is published too
}


def read_release(
    folder: Path, path: Path, raw: bytes, options: IngestOptions, companions: Sequence[str] = ()
) -> Announcement:
    """Turn the bytes of one release file into an Announcement, or raise AnnouncementError.

    `companions` are files beside it named after it (see inbox.list_release_files), published with it.
    """
    folder, path = folder.absolute(), path.absolute()
    source = path.relative_to(folder).as_posix()
    if len(raw) > options.max_file_bytes:
        raise AnnouncementError(
            source,
            f"file is {len(raw)} bytes; the limit is {options.max_file_bytes}",
            hint="raise max_file_bytes in config.yaml if this is intended",
        )
    if not _without_bom(raw).strip():
        raise AnnouncementError(source, "file is empty", line=1)
    kind = FORMATS[path.suffix.lower()]
    meta, body_html = kind.parse(kind.decode(raw, source, options), source, options)
    lang, named = _language(path.stem, meta.lang, options)
    release_id, translation_of = meta.id, meta.translation_of
    if release_id is None:
        # "carnot.fr.md" beside "carnot.en.md": ids carnot-fr and carnot (in the default language),
        # both versions of release carnot.
        base = slugify(path.stem.rsplit(".", 1)[0] if named else path.stem)
        default = lang.split("-")[0].lower() == options.default_language.split("-")[0].lower()
        release_id = base if not named or default else f"{base}-{named}"
        if named and translation_of is None and release_id != base:
            translation_of = base
    if not release_id:
        raise AnnouncementError(source, "cannot derive an id from the file name", hint="add an 'id:' key")
    if translation_of == release_id:
        translation_of = None  # the original itself
    return Announcement(
        id=release_id,
        title=meta.title,
        date=meta.date,
        body_html=body_html,
        summary=meta.summary or first_paragraph_text(body_html),
        source=source,
        lang=lang,
        topics=meta.topics,
        author=meta.author,
        publish_at=meta.publish_at,
        attachments=_attachments(folder, path, raw, kind, meta, companions),
        draft=meta.draft,
        correction=meta.correction,
        contacts=meta.contacts,
        doi=meta.doi,
        link=meta.link,
        translation_of=translation_of,
    )


def _language(stem: str, given: str | None, options: IngestOptions) -> tuple[str, str | None]:
    # The language of a release, and the one its file name ends with ("carnot.fr"), if any: the name
    # wins over what the text seems to be in, being the operator's explicit choice.
    base, dot, suffix = stem.rpartition(".")
    named = suffix.lower() if dot and base and suffix.lower() in options.languages else None
    if named is None:
        return given or options.default_language, None
    if given is not None and given.split("-")[0].lower() == named:
        return given, named
    return named, named


def _without_bom(raw: bytes) -> bytes:
    return next((raw[len(bom) :] for bom, _, _ in _BOMS if raw.startswith(bom)), raw)


def _attachments(
    folder: Path, path: Path, raw: bytes, kind: Format, meta: Metadata, companions: Sequence[str]
) -> tuple[Attachment, ...]:
    # The original (a PDF) first, then the files the front matter lists, then those named after it.
    found: dict[str, Attachment] = {}
    if kind.attach_self:
        found[path.name] = _describe(folder, path, raw)
    source = path.relative_to(folder).as_posix()
    for name in (*meta.attachments, *companions):
        if name in found:
            continue
        file = path.parent / name
        resolved = file.resolve()
        if not resolved.is_relative_to(folder.resolve()) or not resolved.is_file():
            raise AnnouncementError(
                source,
                f"attachment {name!r} not found next to the release",
                line=meta.attachments_line,
                hint=f"copy it to {path.parent.relative_to(folder).as_posix() or '.'}/{name}",
            )
        found[name] = _describe(folder, file, resolved.read_bytes())
    return tuple(found.values())


def content_type(name: str) -> str:
    """The media type an attachment is served with: our table first, so it never depends on the host."""
    suffix = PurePosixPath(name).suffix.lower()
    return _CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def _describe(folder: Path, file: Path, data: bytes) -> Attachment:
    return Attachment(
        name=file.name,
        path=file.relative_to(folder).as_posix(),
        content_type=content_type(file.name),
        length=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )

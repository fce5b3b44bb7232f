"""Markdown release files: YAML front matter, then a Markdown body."""

from __future__ import annotations

from service.errors import AnnouncementError
from service.ingest.frontmatter import Metadata, split, validate
from service.ingest.options import IngestOptions
from service.ingest.sanitize import NestedTooDeep, markdown_to_html


def parse_markdown(text: str, source: str, options: IngestOptions) -> tuple[Metadata, str]:
    """Parse a Markdown release into its metadata and sanitised HTML body."""
    doc = split(text, source)
    meta = validate(doc, source, options)
    try:
        return meta, markdown_to_html(doc.body)
    except NestedTooDeep as exc:
        raise AnnouncementError(
            source,
            f"the Markdown is {exc}",
            line=doc.body_line + exc.line,
            hint="flatten the lists or quotes: deeper text would be lost",
        ) from None

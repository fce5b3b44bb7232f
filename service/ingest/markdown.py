"""Markdown release files: YAML front matter, then a Markdown body."""

from __future__ import annotations

from service.ingest.frontmatter import Metadata, split, validate
from service.ingest.options import IngestOptions
from service.ingest.sanitize import markdown_to_html


def parse_markdown(text: str, source: str, options: IngestOptions) -> tuple[Metadata, str]:
    """Parse a Markdown release into its metadata and sanitised HTML body."""
    doc = split(text, source)
    return validate(doc, source, options), markdown_to_html(doc.body)

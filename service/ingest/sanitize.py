"""Markdown to safe HTML, and the text hygiene every release field goes through."""

from __future__ import annotations

import html as htmllib
import re
import unicodedata
from functools import cache

import nh3
from markdown_it import MarkdownIt
from mdit_py_plugins.footnote import footnote_plugin

# Footnotes need ids and classes to link back and forth; nothing else gets attributes beyond nh3's defaults.
_EXTRA_ATTRIBUTES = {
    "a": {"id", "class"},
    "sup": {"id", "class"},
    "li": {"id", "class"},
    "section": {"class"},
    "hr": {"class"},
    "th": {"style"},
    "td": {"style"},
}
_ALLOWED_TAGS = nh3.ALLOWED_TAGS | {"section"}
# Characters XML 1.0 and email forbid: C0 controls but tab/newline/CR, surrogates, U+FFFE/FFFF.
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


MAX_NESTING = 50  # markdown-it's levels (a list level takes two, a quote one): 24 lists or 49 quotes


class NestedTooDeep(ValueError):
    """Markdown nested deeper than MAX_NESTING: markdown-it would silently drop the deepest text."""

    def __init__(self, line: int) -> None:
        super().__init__(f"nested more than {MAX_NESTING} levels deep")
        self.line = line  # 0-based, in the Markdown text


@cache
def _markdown() -> MarkdownIt:
    # commonmark + tables + strikethrough + footnotes; raw HTML is allowed in and cleaned after.
    options = {"html": True, "maxNesting": MAX_NESTING}
    return MarkdownIt("commonmark", options).enable(["table", "strikethrough"]).use(footnote_plugin)


def _attributes() -> dict[str, set[str]]:
    merged = {tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()}
    for tag, attrs in _EXTRA_ATTRIBUTES.items():
        merged[tag] = merged.get(tag, set()) | attrs
    return merged


_ATTRIBUTES = _attributes()


def strip_illegal(text: str) -> str:
    """Drop characters that no feed, page or mail may carry."""
    return _ILLEGAL.sub("", text)


def find_illegal(text: str) -> str | None:
    """Return the first forbidden character in `text`, or None."""
    match = _ILLEGAL.search(text)
    return match.group() if match else None


def clean_html(html: str) -> str:
    """Sanitise HTML: no scripts, no event handlers, no javascript: or data: URLs."""
    return nh3.clean(
        strip_illegal(html),
        tags=_ALLOWED_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto", "tel"},
        filter_style_properties={"text-align"},  # table alignment only: no url(), no overlays
        link_rel="noopener noreferrer",
    )


def markdown_to_html(text: str) -> str:
    """Render Markdown (tables, footnotes) and sanitise the result; NestedTooDeep rather than lose text."""
    md = _markdown()
    tokens = md.parse(unicodedata.normalize("NFC", text))
    for token in tokens:
        # At the limit markdown-it stops parsing deeper blocks: what they held would vanish.
        if token.level >= MAX_NESTING - 1:
            raise NestedTooDeep(next((t.map[0] for t in tokens if t.map and t.level >= MAX_NESTING - 2), 0))
    return clean_html(md.renderer.render(tokens, md.options, {}))


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment, whitespace collapsed (for summaries)."""
    text = _TAG.sub(" ", nh3.clean(fragment, tags=set()))
    return _SPACE.sub(" ", htmllib.unescape(text)).strip()


def first_paragraph_text(html: str, limit: int = 280) -> str:
    """Plain text of the first paragraph, cut at a word boundary to at most `limit` characters."""
    match = re.search(r"<p>(.*?)</p>", html, re.S)
    text = html_to_text(match.group(1) if match else html)
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(",;:.") + "…"

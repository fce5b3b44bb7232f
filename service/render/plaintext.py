"""Sanitised release HTML to readable plain text at 72 columns, for the text part of mails."""

from __future__ import annotations

import textwrap
from html.parser import HTMLParser

WIDTH = 72
_BLOCKS = {"p", "div", "section", "blockquote", "table", "tr", "ul", "ol", "pre", "figure", "hr"}
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self._current: list[str] = []
        self._links: list[str | None] = []
        self._pre = 0
        self._heading = False
        self._item = False

    def _flush(self) -> None:
        text = "".join(self._current)
        self._current = []
        if self._pre:
            if text.strip("\n"):
                self.blocks.append(text.strip("\n"))
            return
        words = " ".join(text.split())
        if not words:
            return
        if self._heading:
            self.blocks.append(words + "\n" + "-" * min(len(words), WIDTH))
        elif self._item:
            self.blocks.append(textwrap.fill(words, WIDTH, initial_indent="- ", subsequent_indent="  "))
        else:
            self.blocks.append(textwrap.fill(words, WIDTH))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCKS or tag in _HEADINGS or tag == "li":
            self._flush()
        if tag == "pre":
            self._pre += 1
        elif tag in _HEADINGS:
            self._heading = True
        elif tag == "li":
            self._item = True
        elif tag == "br":
            self._current.append("\n" if self._pre else " ")
        elif tag == "a":
            self._links.append(dict(attrs).get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._links:
            href = self._links.pop()
            if href and href.startswith(("http://", "https://", "mailto:")):
                self._current.append(f" <{href}>")
            return
        if tag in _BLOCKS or tag in _HEADINGS or tag == "li":
            self._flush()
        if tag == "pre":
            self._pre = max(0, self._pre - 1)
        elif tag in _HEADINGS:
            self._heading = False
        elif tag == "li":
            self._item = False

    def handle_data(self, data: str) -> None:
        self._current.append(data)


def html_to_plain(html: str) -> str:
    """Paragraphs wrapped at 72 columns, headings underlined, list items dashed, links as <URL>."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    parser._flush()
    return "\n\n".join(parser.blocks)

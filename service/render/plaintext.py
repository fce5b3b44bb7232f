"""Sanitised release HTML to readable plain text at 72 columns, for the text part of mails."""

from __future__ import annotations

import textwrap
from html.parser import HTMLParser

WIDTH = 72
_BLOCKS = {"p", "div", "section", "blockquote", "table", "tr", "ul", "ol", "pre", "figure", "hr"}
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_BREAK = "\u2028"  # a <br>: kept apart from the newlines of the HTML source, which are spaces


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self._current: list[str] = []
        self._links: list[str | None] = []
        self._pre = 0
        self._heading = False
        self._lists: list[list[int]] = []  # per open list: [number of the next item, or 0 when bulleted]
        self._item: str | None = None  # the marker of the list item being read ("- ", "2. ")
        self._item_follows = False  # the last block was an item of the open list: no blank line

    def _flush(self) -> None:
        text = "".join(self._current)
        self._current = []
        if self._pre:
            if text.strip("\n"):
                self._append(text.strip("\n").replace(_BREAK, "\n"))
            return
        lines = [" ".join(line.split()) for line in text.split(_BREAK)]
        lines = [line for line in lines if line]
        if not lines:
            return
        if self._heading:
            words = " ".join(lines)
            self._append(words + "\n" + "-" * min(len(words), WIDTH))
        elif self._item is not None:
            indent = " " * len(self._item)
            filled = [
                textwrap.fill(line, WIDTH, initial_indent=indent, subsequent_indent=indent) for line in lines
            ]
            item = self._item + "\n".join(filled)[len(indent) :]
            if self._item_follows:
                self.blocks[-1] += "\n" + item
            else:
                self._append(item)
            self._item_follows = True
            self._item = " " * len(self._item)  # more text in the same item: no second marker
        else:
            self._append("\n".join(textwrap.fill(line, WIDTH) for line in lines))

    def _append(self, block: str) -> None:
        self.blocks.append(block)
        self._item_follows = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCKS or tag in _HEADINGS or tag == "li":
            self._flush()
        if tag == "pre":
            self._pre += 1
        elif tag in _HEADINGS:
            self._heading = True
        elif tag in ("ul", "ol"):
            self._lists.append([1 if tag == "ol" else 0])
        elif tag == "li":
            counter = self._lists[-1] if self._lists else [0]
            self._item = f"{counter[0]}. " if counter[0] else "- "
            if counter[0]:
                counter[0] += 1
        elif tag == "br":
            self._current.append(_BREAK)
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
            self._item = None
        elif tag in ("ul", "ol") and self._lists:
            self._lists.pop()
            self._item_follows = False

    def handle_data(self, data: str) -> None:
        self._current.append(data)


def html_to_plain(html: str) -> str:
    """Paragraphs wrapped at 72 columns, headings underlined, list items marked, links as <URL>.

    A list's items are on consecutive lines ("- " or "1. "), and a <br> starts a new line.
    """
    parser = _Text()
    parser.feed(html)
    parser.close()
    parser._flush()
    return "\n\n".join(parser.blocks)

"""Properties of the plain-text parser, checked with hypothesis on generated releases.

1. Whatever the text (control characters, odd Unicode, half-written front matter, list and contact
   look-alikes) or the bytes, the parser either returns a release or raises AnnouncementError.
2. No body text is lost: a generated release (dateline, paragraphs of words, headings, lists),
   re-wrapped at a random width with stray spaces and blank lines, has every word in its body, in
   order, and every list item is an <li>.

The budget is fixed and the examples derandomised, so the file runs the same in CI, in a few seconds.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from service.errors import AnnouncementError
from service.ingest.plaintext import parse_plaintext
from service.ingest.reader import decode_text
from service.ingest.sanitize import clean_html, find_illegal, html_to_text
from tests.ingest.properties import BUDGET, OPTIONS

WORD = re.compile(r"\w+")

# ---- 1. nothing but AnnouncementError ------------------------------------------------------------

# Lines that drive the parser into each of its rules, mixed with arbitrary text.
FRAGMENTS = [
    "Paris, 12 February 2020",
    "Paris, le 12 février 2020",
    "LYON, France, March 3, 2021 -- The group",
    "Paris, 31/02/2020",
    "2020-02-12",
    "12.02.1812",
    "Saint-Étienne, 12 \u017feptember 2020",  # long s: re.I matches it as "s"
    "Paris, 12 apr\u0130l 2020",  # dotted capital I: re.I matches it as "i"
    "Press release",
    "COMMUNIQUÉ DE PRESSE",
    "FOR IMMEDIATE RELEASE",
    ">",
    "> The lead",
    "- an item;",
    "• an item",
    "* an item",
    "\u2013 an item",
    "1. First",
    "2) Second",
    "1. Context",
    "Press contact:",
    "Contact presse : Jane Doe",
    "jane.doe@example.org",
    "+33 1 23 45 67 89",
    "About Us",
    "À propos de l’IMT",
    "###",
    "- ENDS -",
    "* * *",
    "---",
    "title: A title",
    "date: 2020-02-12",
    "topics: [a, b]",
    "well-",
    "known",
    "profes\u00ad",
    "\x0c",
    "\x00\x1b\x7f",
    "\u2028\u2029\x85",
    "\ufeff\u200b\u202e",
    "e\u0301\u0301\u0301",
    "",
    "   ",
]
odd_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"]),  # lone surrogates cannot come out of a decoder
    max_size=80,
)
arbitrary_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), odd_text), max_size=30).map("\n".join)


def parse_or_refuse(text: str) -> None:
    """Parse `text`; a result must be safe to put in a feed or a mail."""
    try:
        meta, body = parse_plaintext(text, "release.txt", OPTIONS)
    except AnnouncementError as error:
        refusal = error
    else:
        assert meta.title.strip()
        for value in (meta.title, meta.summary or "", body):
            assert find_illegal(value) is None  # feedgen and email refuse these at render time
        assert clean_html(body) == body  # already sanitised
        return
    assert refusal.file == "release.txt"
    assert refusal.reason


@BUDGET
@given(arbitrary_text)
def test_any_text_is_parsed_or_refused(text: str) -> None:
    parse_or_refuse(text)


@BUDGET
@given(st.binary(max_size=400))
def test_any_bytes_are_decoded_and_parsed_or_refused(raw: bytes) -> None:
    try:
        text = decode_text(raw, "release.txt")
    except AnnouncementError:
        return
    parse_or_refuse(text)


@BUDGET
@given(arbitrary_text, st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp1252"]))
def test_encoded_text_is_parsed_or_refused(text: str, encoding: str) -> None:
    try:
        raw = text.encode(encoding)
    except UnicodeEncodeError:
        raw = text.encode(encoding, "replace")
    try:
        decoded = decode_text(raw, "release.txt")
    except AnnouncementError:
        return
    parse_or_refuse(decoded)


# ---- 2. no paragraph is lost --------------------------------------------------------------------

DATELINES = [
    "Paris, 12 February 2020",
    "Paris, le 12 février 2020",
    "Saint-Étienne, Feb. 3, 2021",
    "Wednesday, February 12, 2020",
    "Aix-en-Provence, le mercredi 12 février 2020",
    "London, 12/02/2020",
    "2020-02-12",
]
MARKERS = ["", "Press release", "Communiqué de presse", "FOR IMMEDIATE RELEASE"]
# Letters only: no digit, dash or '@' that could make a word a list number, a date or an address.
words = st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyzéèàçœ", min_size=2, max_size=12), min_size=1)


@dataclass(frozen=True)
class Release:
    """A generated release: its file text, and the words its body must show, in order."""

    text: str
    title: str | None
    body_words: list[str]
    list_items: int  # every generated item is an <li>, and nothing else is


def sentence(chosen: list[str]) -> str:
    return " ".join([chosen[0].capitalize(), *chosen[1:]]) + "."


def heading(chosen: list[str]) -> str:
    return " ".join(word.capitalize() for word in chosen[:6])


def wrap(text: str, width: int, rng: random.Random, keep: str = "") -> list[str]:
    """Greedy wrapping at `width`, then stray spaces around and between words; `keep` starts unbroken."""
    lines: list[str] = [keep] if keep else []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " * rng.choice([1, 1, 1, 2, 3]) + word
        else:
            lines.append(word)
    return [" " * rng.choice([0, 0, 0, 1, 4]) + line + " " * rng.choice([0, 0, 1, 2]) for line in lines]


BULLETS = ["- ", "\u2022 ", "* ", "\u2013 ", "1. ", "1) "]  # "1" stands for the item's number


def list_lines(entries: list[str], bullet: str, width: int, rng: random.Random) -> list[list[str]]:
    """The lines of each list item: the bullet (or number), then the text wrapped under it."""
    items = []
    for number, entry in enumerate(entries, start=1):
        sign = f"{number}{bullet[1:]}" if bullet[0] == "1" else bullet
        lines = [line.strip() for line in wrap(entry, max(width - len(sign), 10), rng)]
        hang = " " * rng.choice([0, len(sign)])  # continuation lines indented under the text, or not
        items.append([" " * rng.choice([0, 0, 2]) + sign + lines[0], *(hang + line for line in lines[1:])])
    return items


@st.composite
def releases(draw: st.DrawFn) -> Release:
    rng = draw(st.randoms(use_true_random=False))
    dateline = draw(st.sampled_from(DATELINES))
    title = draw(st.one_of(st.none(), words.map(heading)))
    count = draw(st.integers(1, 6))
    headings = {
        position: heading(draw(words))
        for position in range(1, count)
        if draw(st.booleans()) and draw(st.booleans())
    }
    # Some paragraphs introduce a list ("...:"), in the same block, in the next one, or one block per item.
    lists = {
        position: (
            draw(st.lists(words.map(" ".join), min_size=1, max_size=5)),
            draw(st.sampled_from(BULLETS)),
            draw(st.sampled_from(["same block", "next block", "item blocks"])),
        )
        for position in range(count)
        if draw(st.integers(0, 3)) == 0
    }
    paragraphs = [
        sentence(draw(words)).removesuffix(".") + (":" if p in lists else ".") for p in range(count)
    ]
    inline = draw(st.booleans())
    width = draw(st.integers(15, 110))

    def blank() -> str:
        return "\n".join(" " * rng.choice([0, 0, 1, 3]) for _ in range(rng.choice([1, 1, 2, 3])))

    blocks = [title] if title else []
    marker = draw(st.sampled_from(MARKERS))
    blocks += [marker] if marker else []
    if not inline:
        blocks.append(dateline)
    expected = WORD.findall(dateline)
    list_items = sum(len(entries) for entries, _, _ in lists.values())
    for position, paragraph in enumerate(paragraphs):
        if position in headings:
            blocks.append(headings[position])
        # An inline dateline is never broken: a dateline is recognised on one line.
        lines = wrap(paragraph, width, rng, f"{dateline} \u2014" if inline and position == 0 else "")
        if position > 0 and len(lines) > 1 and rng.random() < 0.3:
            # A stray blank line inside a paragraph (not the lead: its top could then pass for a title).
            cut = rng.randrange(1, len(lines))
            lines = [*lines[:cut], blank(), *lines[cut:]]
        expected += WORD.findall(headings.get(position, "")) + WORD.findall(paragraph)
        if position not in lists:
            blocks.append("\n".join(lines))
            continue
        entries, bullet, layout = lists[position]
        entries = [entry + (";" if n < len(entries) - 1 else ".") for n, entry in enumerate(entries)]
        expected += [word for entry in entries for word in WORD.findall(entry)]
        items = ["\n".join(item) for item in list_lines(entries, bullet, width, rng)]
        if layout == "same block":
            blocks.append("\n".join([*lines, *items]))
        elif layout == "next block":
            blocks += ["\n".join(lines), "\n".join(items)]
        else:
            blocks += ["\n".join(lines), *items]
    text = f"\n{blank()}\n".join(blocks) + draw(st.sampled_from(["", "\n", "\n\n  \n"]))
    return Release(text, title, expected, list_items)


@BUDGET
@given(releases())
def test_every_word_of_the_body_is_kept_in_order(release: Release) -> None:
    meta, body = parse_plaintext(release.text, "release.txt", OPTIONS)
    assert WORD.findall(html_to_text(body)) == release.body_words
    assert body.count("<li>") == release.list_items
    if release.title is not None:
        assert meta.title == release.title
    assert clean_html(body) == body


@BUDGET
@given(releases(), st.sampled_from(["\r\n", "\r"]), st.sampled_from(["utf-8", "cp1252", "utf-16"]))
def test_line_endings_and_encodings_do_not_change_the_release(
    release: Release, newline: str, encoding: str
) -> None:
    expected = parse_plaintext(release.text, "release.txt", OPTIONS)
    raw = release.text.replace("\n", newline).encode(encoding)
    assert parse_plaintext(decode_text(raw, "release.txt"), "release.txt", OPTIONS) == expected

"""Properties of the Markdown release reader (front matter + Markdown), checked with hypothesis.

Whatever the bytes or the text (half-written front matter, YAML tags, aliases and flow collections,
Markdown and HTML look-alikes, control characters and odd line breaks), `read_release` either
returns a release or raises AnnouncementError, and an error's line, when it has one, is a line of
the file. Nothing else escapes (a KeyError, a RecursionError, a yaml error ...).

The budget is fixed and the examples derandomised: the file runs the same everywhere, in seconds.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import event, given
from hypothesis import strategies as st

from service.errors import AnnouncementError
from service.ingest.reader import read_release
from service.ingest.sanitize import clean_html, find_illegal
from tests.ingest.properties import BUDGET, OPTIONS

# One folder for every example (a function-scoped tmp_path would be shared by them anyway).
FOLDER = Path(tempfile.mkdtemp(prefix="markdown-properties-"))
(FOLDER / "photo.jpg").write_bytes(b"\xff\xd8\xff")

# Lines that drive the reader into each of its rules, mixed with arbitrary text.
FRAGMENTS = [
    "---",
    "--- ",
    "----",
    "...",
    "title: A title",
    "title: ''",
    'title: "Line\\r\\nBcc: x@example.org"',
    "title: [a, b]",
    "title: {en: x}",
    "title: &a x",
    "title: *a",
    "date: 2020-02-12",
    "date: 2020-02-30",
    "date: 2020-02-12T09:00:00",
    "date: 2020-02-12T09:00:00+01:00",
    "date: next tuesday",
    "date: 20200212",
    "publish_at: 2099-01-01T00:00:00Z",
    "topics: [research, awards]",
    "topics: research",
    "topics: [[[[",
    "lang: fr",
    "lang: 12",
    "id: ../../etc/passwd",
    "id: 2020-02-12",
    "attachments: [photo.jpg]",
    "attachments: [../secret.txt]",
    "attachments: missing.pdf",
    "contacts:",
    "  - name: Jane Doe",
    "    email: jane@example.org",
    "    phone: 0142345670",
    "link: javascript:alert(1)",
    "doi: 10.1234/abcd",
    "draft: yes",
    "correction: fixed a typo",
    "<<: *base",
    "!!python/object/apply:os.system [ls]",
    "? [complex, key]",
    ": value",
    "key: |",
    "  block",
    "\ttabbed: value",
    "# a comment",
    "# Heading",
    "> a quote",
    "- item",
    "1. item",
    "```",
    "<script>alert(1)</script>",
    "[link](javascript:alert(1))",
    "![img](data:image/png;base64,AAAA)",
    "<div onclick=x>",
    "&#0; &#xD800; ]]>",
    "\ufeff",
    "\x00\x1b\x7f",
    "\u2028\u2029\x85",
    "\x0b\x0c\x1c\x1d\x1e",
    "\r",
    "",
    "   ",
]
odd_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=60)
arbitrary_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), odd_text), max_size=30).map("\n".join)
# Most interesting files open their front matter: start a good share of them that way.
front_matter_first = st.tuples(st.sampled_from(["---\n", "---\r\n", "\ufeff---\n", ""]), arbitrary_text).map(
    "".join
)


def line_count(raw: bytes) -> int:
    """The file's lines, counted the most generous way (every Unicode line break), plus the empty
    line after a final line break: a line number beyond this is no line of the file."""
    text = raw.decode("utf-8", "replace")
    return max(text.count("\n"), text.count("\r"), len(text.splitlines())) + 1


def read_or_refuse(raw: bytes, name: str = "release.md") -> None:
    """Read `raw` as a Markdown release; a release must be safe to publish, a refusal must say where."""
    try:
        release = read_release(FOLDER, FOLDER / name, raw, OPTIONS)
    except AnnouncementError as error:
        refusal = error
    else:
        event("read")
        assert release.title.strip()
        assert find_illegal(release.title) is None
        assert "\n" not in release.title
        assert "\r" not in release.title
        assert clean_html(release.body_html) == release.body_html  # already sanitised
        return
    event(f"refused: {refusal.reason[:30]}")
    assert refusal.file == name
    assert refusal.reason
    assert refusal.line is None or 1 <= refusal.line <= line_count(raw), (refusal.line, refusal.reason)


@BUDGET
@given(st.binary(max_size=600))
def test_any_bytes_are_read_or_refused_with_a_line_of_the_file(raw: bytes) -> None:
    read_or_refuse(raw)


@BUDGET
@given(st.tuples(st.sampled_from([b"---\n", b"---\r\n", b""]), st.binary(max_size=400)).map(b"".join))
def test_bytes_after_an_opening_delimiter_are_read_or_refused(raw: bytes) -> None:
    read_or_refuse(raw)


@BUDGET
@given(front_matter_first)
def test_any_text_is_read_or_refused_with_a_line_of_the_file(text: str) -> None:
    read_or_refuse(text.encode("utf-8", "surrogatepass"))


# Mostly valid front matter (a good share of the files are published), with one odd line at times.
TITLES = ["title: A title", "title: Été à Paris", "title: 'x: y'", *FRAGMENTS[5:11]]
DATES = ["date: 2020-02-12", "date: 2020-02-12T09:00:00+01:00", "date: 2026-11-24", *FRAGMENTS[12:17]]
EXTRAS = [*FRAGMENTS[17:46]]


@BUDGET
@given(
    st.one_of(st.sampled_from(TITLES[:3]), st.sampled_from(TITLES)),
    st.one_of(st.sampled_from(DATES[:3]), st.sampled_from(DATES)),
    st.lists(st.sampled_from(EXTRAS), max_size=5, unique=True),
    st.one_of(st.sampled_from(["Body.", "# Heading\n\nText with **bold**."]), arbitrary_text),
)
def test_near_valid_front_matter_is_read_or_refused_with_a_line_of_the_file(
    title: str, date: str, extras: list[str], body: str
) -> None:
    text = "---\n" + "\n".join([title, date, *extras]) + "\n---\n\n" + body + "\n"
    read_or_refuse(text.encode("utf-8", "surrogatepass"), name="news.markdown")

"""Release files through `read_release`: front matter fields, defaults, errors with file lines, encodings."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from service.errors import AnnouncementError
from service.ingest.options import IngestOptions
from service.ingest.reader import read_release
from service.models import Announcement, Attachment, Contact
from tests.conftest import release_text

PARIS = ZoneInfo("Europe/Paris")
OPTIONS = IngestOptions(PARIS, "en", 5_000_000)
TITLE = "title: Carnot label renewed"  # front matter line 2 when first
DATE = "date: 2020-02-12"  # front matter line 3 when second
ID_HINT = "lowercase letters, digits, '-' and '_', e.g. 2020-02-carnot"
DATE_EXAMPLES = "2020-02-12 or 2020-02-12T09:00:00+01:00"
DATE_HINT = "use ISO 8601, e.g. " + DATE_EXAMPLES + " or 2020-02-12T09:00 Europe/Paris"
NAIVE_HINT = "add an offset such as +01:00 or Z, or give a date alone"
KNOWN_KEYS = (
    "known keys: title, date, id, summary, topics, author, lang, publish_at, attachments, draft, correction, "
    "contacts, doi, link, translation_of"
)


def doc(*front: str, body: str = "Body text.") -> str:
    """A release whose front matter lines are `front`: front[i] is on line i + 2 of the file."""
    return "---\n" + "".join(f"{line}\n" for line in front) + "---\n\n" + body + "\n"


def read(
    folder: Path, content: str | bytes, name: str = "release.md", options: IngestOptions = OPTIONS
) -> Announcement:
    """Write `content` as a real file in `folder` and read it back the way the service does."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = content.encode() if isinstance(content, str) else content
    path.write_bytes(raw)
    return read_release(folder, path, raw, options)


def refused(
    folder: Path, content: str | bytes, name: str = "release.md", options: IngestOptions = OPTIONS
) -> AnnouncementError:
    """The error raised for a file that must be refused."""
    with pytest.raises(AnnouncementError) as info:
        read(folder, content, name, options)
    assert info.value.file == name
    return info.value


# ---- a complete, valid release ------------------------------------------------------------------


def test_every_field_is_parsed_to_its_type(tmp_path: Path) -> None:
    pdf = b"%PDF-1.4 press kit\n" * 10
    (tmp_path / "2020").mkdir()
    (tmp_path / "2020" / "dossier.pdf").write_bytes(pdf)
    text = doc(
        "title: Carnot label renewed",
        "date: 2020-02-12T09:00:00+01:00",
        "id: 2020-02-carnot",
        "summary: The label is renewed for five years.",
        "topics: [research, awards]",
        "author: Press office",
        "lang: fr-FR",
        "publish_at: 2020-02-12T10:30:00+01:00",
        "attachments: [dossier.pdf]",
        "draft: true",
        body="The *institute* keeps its label.",
    )

    ann = read(tmp_path, text, "2020/carnot.md")

    assert ann == Announcement(
        id="2020-02-carnot",
        title="Carnot label renewed",
        date=datetime(2020, 2, 12, 9, 0, tzinfo=timezone(timedelta(hours=1))),
        body_html="<p>The <em>institute</em> keeps its label.</p>\n",
        summary="The label is renewed for five years.",
        source="2020/carnot.md",
        lang="fr-FR",
        topics=("research", "awards"),
        author="Press office",
        publish_at=datetime(2020, 2, 12, 10, 30, tzinfo=timezone(timedelta(hours=1))),
        attachments=(
            Attachment(
                name="dossier.pdf",
                path="2020/dossier.pdf",
                content_type="application/pdf",
                length=len(pdf),
                sha256=hashlib.sha256(pdf).hexdigest(),
            ),
        ),
        draft=True,
    )
    assert ann.date.utcoffset() == timedelta(hours=1)
    assert ann.publish_at is not None
    assert ann.publish_at.utcoffset() == timedelta(hours=1)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param("date: 2020-02-12", "2020-02-12T00:00:00+01:00", id="date-alone-winter"),
        pytest.param("date: 2020-07-01", "2020-07-01T00:00:00+02:00", id="date-alone-summer-time"),
        pytest.param("date: '2020-02-12'", "2020-02-12T00:00:00+01:00", id="date-alone-quoted"),
        pytest.param("date: 2020-02-12T09:00:00+01:00", "2020-02-12T09:00:00+01:00", id="aware"),
        pytest.param('date: "2020-02-12T09:00:00+01:00"', "2020-02-12T09:00:00+01:00", id="aware-quoted"),
        pytest.param("date: 2020-02-12T08:00:00Z", "2020-02-12T08:00:00+00:00", id="utc-z"),
        pytest.param('date: "2020-02-12T08:00:00Z"', "2020-02-12T08:00:00+00:00", id="utc-z-quoted"),
        pytest.param("date: 2020-02-12 09:00:00 +05:30", "2020-02-12T09:00:00+05:30", id="yaml-spaced"),
    ],
)
def test_date_forms(tmp_path: Path, line: str, expected: str) -> None:
    ann = read(tmp_path, doc(TITLE, line))
    assert ann.date.isoformat() == expected
    assert ann.date.utcoffset() is not None


def test_a_date_alone_is_midnight_in_the_configured_zone(tmp_path: Path) -> None:
    ann = read(tmp_path, doc(TITLE, DATE))
    assert ann.date == datetime(2020, 2, 11, 23, 0, tzinfo=UTC)
    assert ann.date.tzinfo == PARIS


def test_publish_at_follows_the_same_rules_as_date(tmp_path: Path) -> None:
    ann = read(tmp_path, doc(TITLE, DATE, "publish_at: 2020-03-01"))
    assert ann.publish_at == datetime(2020, 3, 1, tzinfo=PARIS)


def test_yaml_booleans_for_draft(tmp_path: Path) -> None:
    assert read(tmp_path, doc(TITLE, DATE, "draft: false")).draft is False
    assert read(tmp_path, doc(TITLE, DATE, "draft: true")).draft is True


def test_multiline_summary_is_kept(tmp_path: Path) -> None:
    ann = read(tmp_path, doc(TITLE, DATE, "summary: |", "  First line.", "  Second line."))
    assert ann.summary == "First line.\nSecond line."


def test_title_is_stripped_and_nfc_normalised(tmp_path: Path) -> None:
    decomposed = "Cafe\u0301 opens"
    ann = read(tmp_path, doc(f'title: "  {decomposed}  "', DATE))
    assert ann.title == "Caf\u00e9 opens"


def test_title_at_the_length_limit_is_accepted(tmp_path: Path) -> None:
    assert read(tmp_path, doc("title: " + "x" * 300, DATE)).title == "x" * 300


def test_built_with_the_shared_release_text_helper(tmp_path: Path) -> None:
    ann = read(tmp_path, release_text(title="Shared helper", date="2020-02-12", topics=["a", "b"]))
    assert (ann.title, ann.topics, ann.body_html) == ("Shared helper", ("a", "b"), "<p>Body text.</p>\n")


# ---- defaults -----------------------------------------------------------------------------------


def test_defaults_come_from_the_file_name_options_and_body(tmp_path: Path) -> None:
    ann = read(
        tmp_path,
        doc(TITLE, DATE, body="Intro with *emphasis* &amp; [a link](https://example.org).\n\nSecond one."),
        "2020-02-12 Carnot Label É.md",
    )
    assert ann.id == "2020-02-12-carnot-label-e"
    assert ann.source == "2020-02-12 Carnot Label É.md"
    assert ann.lang == "en"
    assert ann.summary == "Intro with emphasis & a link."
    assert (ann.topics, ann.author, ann.publish_at, ann.attachments, ann.draft) == ((), None, None, (), False)


def test_lang_default_comes_from_the_options(tmp_path: Path) -> None:
    ann = read(tmp_path, doc(TITLE, DATE), options=IngestOptions(PARIS, "fr", 5_000_000))
    assert ann.lang == "fr"


def test_id_slug_of_a_file_in_a_subfolder_uses_only_its_name(tmp_path: Path) -> None:
    ann = read(tmp_path, doc(TITLE, DATE), "2020/Février, rapport (final).markdown")
    assert (ann.id, ann.source) == ("fevrier-rapport-final", "2020/Février, rapport (final).markdown")


def test_a_file_name_without_any_ascii_letter_needs_an_id(tmp_path: Path) -> None:
    error = refused(tmp_path, doc(TITLE, DATE), "日本.md")
    assert (error.reason, error.line, error.hint) == (
        "cannot derive an id from the file name",
        None,
        "add an 'id:' key",
    )
    assert read(tmp_path, doc(TITLE, DATE, "id: japan"), "日本.md").id == "japan"


def test_summary_skips_a_leading_heading(tmp_path: Path) -> None:
    ann = read(tmp_path, doc(TITLE, DATE, body="# Heading\n\nFirst   paragraph\nwrapped."))
    assert ann.summary == "First paragraph wrapped."


def test_long_summary_is_cut_at_a_word_boundary_with_an_ellipsis(tmp_path: Path) -> None:
    words = [f"word{n:03d}" for n in range(100)]
    full = " ".join(words)
    ann = read(tmp_path, doc(TITLE, DATE, body=full))
    assert ann.summary.endswith("…")
    kept = ann.summary.removesuffix("…")
    assert len(kept) <= 280
    assert full.startswith(kept)
    assert full[len(kept)] == " "  # cut between two words, not inside one
    assert kept.split(" ") == words[: len(kept.split(" "))]


def test_short_summary_is_not_cut(tmp_path: Path) -> None:
    assert read(tmp_path, doc(TITLE, DATE, body="Short.")).summary == "Short."


def test_topics_are_lowercased_and_deduplicated_in_order(tmp_path: Path) -> None:
    ann = read(tmp_path, doc(TITLE, DATE, "topics: [Research, AWARDS, research, ' awards ', open-science]"))
    assert ann.topics == ("research", "awards", "open-science")


def test_duplicate_attachments_are_listed_once(tmp_path: Path) -> None:
    (tmp_path / "a.pdf").write_bytes(b"x")
    ann = read(tmp_path, doc(TITLE, DATE, "attachments: [a.pdf, a.pdf]"))
    assert [a.name for a in ann.attachments] == ["a.pdf"]


def test_unknown_attachment_type_is_octet_stream(tmp_path: Path) -> None:
    (tmp_path / "data.zzz-unknown").write_bytes(b"\x00\x01")
    ann = read(tmp_path, doc(TITLE, DATE, "attachments: [data.zzz-unknown]"))
    assert ann.attachments[0].content_type == "application/octet-stream"
    assert ann.attachments[0].length == 2


# ---- front matter structure errors --------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("Just a body.\n", id="no-delimiter"),
        pytest.param("title: A\ndate: 2020-02-12\n---\nBody\n", id="no-opening-delimiter"),
        pytest.param("\n---\ntitle: A\n---\n", id="blank-line-first"),
    ],
)
def test_missing_front_matter(tmp_path: Path, text: str) -> None:
    error = refused(tmp_path, text)
    assert (error.reason, error.line, error.hint) == (
        "missing front matter",
        1,
        "start the file with a '---' line, then 'title:' and 'date:' lines, then '---'",
    )


def test_unclosed_front_matter(tmp_path: Path) -> None:
    error = refused(tmp_path, "---\ntitle: A\ndate: 2020-02-12\n\nBody text.\n")
    assert (error.reason, error.line, error.hint) == (
        "front matter is not closed",
        1,
        "add a '---' line after it",
    )


def test_front_matter_may_close_with_dots(tmp_path: Path) -> None:
    assert read(tmp_path, f"---\n{TITLE}\n{DATE}\n...\nBody.\n").title == "Carnot label renewed"


@pytest.mark.parametrize(
    ("front", "reason", "line"),
    [
        pytest.param(
            (TITLE, "  date: 2020-02-12"), "invalid YAML: mapping values are not allowed here", 3, id="indent"
        ),
        pytest.param(
            (TITLE, DATE, "author: a: b"), "invalid YAML: mapping values are not allowed here", 4, id="colon"
        ),
        pytest.param(
            (TITLE, DATE, "\tauthor: x"),
            "invalid YAML: found character '\\t' that cannot start any token",
            4,
            id="tab",
        ),
        pytest.param(
            (TITLE, DATE, "author: x", "summary: !!python/object:os.system x"),
            "invalid YAML: could not determine a constructor for the tag "
            "'tag:yaml.org,2002:python/object:os.system'",
            5,
            id="python-tag",
        ),
    ],
)
def test_invalid_yaml_names_the_line_of_the_problem(
    tmp_path: Path, front: tuple[str, ...], reason: str, line: int
) -> None:
    error = refused(tmp_path, doc(*front))
    assert (error.reason, error.line) == (reason, line)


def test_yaml_alias_is_refused(tmp_path: Path) -> None:
    error = refused(tmp_path, doc("title: &name Carnot", DATE, "author: *name"))
    assert (error.reason, error.line) == ("invalid YAML: aliases (*name) are not allowed", 4)


def test_billion_laughs_fails_fast(tmp_path: Path) -> None:
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        levels.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    text = doc(TITLE, DATE, *levels, "summary: *i")
    started = time.perf_counter()
    error = refused(tmp_path, text)
    assert time.perf_counter() - started < 0.5
    assert (error.reason, error.line) == ("invalid YAML: aliases (*name) are not allowed", 5)


@pytest.mark.parametrize(
    "front",
    [
        pytest.param(("- title: A", "- date: 2020-02-12"), id="list"),
        pytest.param(("just some words",), id="scalar"),
        pytest.param((), id="empty"),
        pytest.param(("# only a comment",), id="comment-only"),
    ],
)
def test_front_matter_must_be_a_mapping(tmp_path: Path, front: tuple[str, ...]) -> None:
    error = refused(tmp_path, doc(*front))
    assert (error.reason, error.line, error.hint) == (
        "front matter must be a mapping of keys to values",
        2,
        "write one 'key: value' per line",
    )


# ---- field errors: reason, hint and the line of the key ----------------------------------------


def field_error(tmp_path: Path, *front: str) -> tuple[str, int | None, str]:
    error = refused(tmp_path, doc(*front))
    return error.reason, error.line, error.hint


@pytest.mark.parametrize(
    ("front", "line"),
    [((DATE,), 1), ((DATE, "title:"), 3), ((DATE, "title: ~"), 3)],
    ids=["absent", "no-value", "null"],
)
def test_missing_title(tmp_path: Path, front: tuple[str, ...], line: int) -> None:
    assert field_error(tmp_path, *front) == (
        "missing required key 'title'",
        line,
        "add a 'title:' line to the front matter",
    )


@pytest.mark.parametrize(
    ("title", "reason"),
    [
        pytest.param('""', "'title' is empty", id="empty"),
        pytest.param("'   '", "'title' is empty", id="blank"),
        pytest.param(r'"Line one\nline two"', "'title' must be a single line", id="newline"),
        pytest.param(r'"Line one\rline two"', "'title' must be a single line", id="carriage-return"),
        pytest.param(r'"Bell \a ring"', "'title' contains the control character U+0007", id="bel"),
        pytest.param(r'"Escape \e"', "'title' contains the control character U+001B", id="esc"),
        pytest.param(r'"Lone \ud800"', "'title' contains the control character U+D800", id="surrogate"),
        pytest.param(r'"Not a char \uffff"', "'title' contains the control character U+FFFF", id="uffff"),
        pytest.param(r'"Tab\there"', "'title' contains the control character U+0009", id="tab"),
        pytest.param("x" * 301, "'title' is 301 characters long; the limit is 300", id="too-long"),
        pytest.param("[a, b]", "'title' must be text", id="list"),
        pytest.param("2020-02-12", "'title' must be text", id="date"),
        pytest.param("true", "'title' must be text", id="boolean"),
    ],
)
def test_invalid_title(tmp_path: Path, title: str, reason: str) -> None:
    assert field_error(tmp_path, DATE, f"title: {title}") == (reason, 3, "")


def test_missing_date(tmp_path: Path) -> None:
    assert field_error(tmp_path, TITLE) == (
        "missing required key 'date'",
        1,
        "add a 'date:' line to the front matter",
    )


@pytest.mark.parametrize(
    ("date", "reason", "hint"),
    [
        pytest.param("tomorrow", "'date' is not a valid date: 'tomorrow'", DATE_HINT, id="word"),
        pytest.param(
            "'2020-02-30'", "'date' is not a valid date: '2020-02-30'", DATE_HINT, id="quoted-feb-30"
        ),
        pytest.param("12/02/2020", "'date' is not a valid date: '12/02/2020'", DATE_HINT, id="day-first"),
        pytest.param("20200212", "'date' must be a date such as " + DATE_EXAMPLES, "", id="integer"),
        pytest.param("[2020, 2, 12]", "'date' must be a date such as " + DATE_EXAMPLES, "", id="list"),
        pytest.param("2020-02-12 10:00:00", "'date' has a time but no time zone", NAIVE_HINT, id="naive"),
        pytest.param(
            "'2020-02-12 10:00:00'", "'date' has a time but no time zone", NAIVE_HINT, id="naive-quoted"
        ),
        pytest.param(
            '"2020-02-12T10:00:00"', "'date' has a time but no time zone", NAIVE_HINT, id="naive-iso"
        ),
        pytest.param("1900-01-01", "'date' year 1900 is outside 1970-2100", "", id="year-1900"),
        pytest.param("2200-01-01", "'date' year 2200 is outside 1970-2100", "", id="year-2200"),
        pytest.param(
            "1900-01-01T09:00:00+01:00", "'date' year 1900 is outside 1970-2100", "", id="aware-1900"
        ),
        pytest.param("'2200-01-01'", "'date' year 2200 is outside 1970-2100", "", id="quoted-2200"),
    ],
)
def test_invalid_date(tmp_path: Path, date: str, reason: str, hint: str) -> None:
    assert field_error(tmp_path, TITLE, f"date: {date}") == (reason, 3, hint)


@pytest.mark.parametrize(
    ("value", "reason", "hint"),
    [
        ("next week", "'publish_at' is not a valid date: 'next week'", DATE_HINT),
        ("2020-02-12 10:00:00", "'publish_at' has a time but no time zone", NAIVE_HINT),
        ("2101-01-01", "'publish_at' year 2101 is outside 1970-2100", ""),
    ],
    ids=["word", "naive", "year-2101"],
)
def test_invalid_publish_at(tmp_path: Path, value: str, reason: str, hint: str) -> None:
    assert field_error(tmp_path, TITLE, DATE, "author: x", f"publish_at: {value}") == (reason, 5, hint)


@pytest.mark.parametrize(
    ("line", "reason", "hint"),
    [
        ("titel: x", "unknown key 'titel'", "did you mean 'title'?"),
        ("summray: x", "unknown key 'summray'", "did you mean 'summary'?"),
        ("publish-at: x", "unknown key 'publish-at'", "did you mean 'publish_at'?"),
        ("attachment: [x.pdf]", "unknown key 'attachment'", "did you mean 'attachments'?"),
        ("colour: red", "unknown key 'colour'", KNOWN_KEYS),
        ("2020: x", "unknown key 2020", KNOWN_KEYS),
    ],
    ids=["titel", "summray", "publish-at", "attachment", "colour", "number"],
)
def test_unknown_key(tmp_path: Path, line: str, reason: str, hint: str) -> None:
    assert field_error(tmp_path, TITLE, DATE, "author: x", line) == (reason, 5, hint)


def test_unknown_key_is_reported_before_invalid_fields(tmp_path: Path) -> None:
    assert field_error(tmp_path, "title: ''", DATE, "titel: x", "dat: y") == (
        "unknown key 'titel'",
        4,
        "did you mean 'title'?",
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("a/b", "a/b"),
        ("..", ".."),
        ("has space", "has space"),
        ("UPPER", "UPPER"),
        ("-start", "-start"),
        ("end_", "end_"),
        ("é", "é"),
        ("a" * 129, "a" * 60),
    ],
    ids=["slash", "dotdot", "space", "upper", "dash-first", "underscore-last", "accent", "too-long"],
)
def test_invalid_id(tmp_path: Path, value: str, shown: str) -> None:
    assert field_error(tmp_path, TITLE, DATE, f"id: {value}") == (
        f"'id' must be {ID_HINT}; got {shown!r}",
        4,
        "",
    )


def test_longest_valid_id(tmp_path: Path) -> None:
    assert read(tmp_path, doc(TITLE, DATE, "id: " + "a" * 128)).id == "a" * 128


@pytest.mark.parametrize(
    "value", ["research", "[1, 2]", "{a: b}", "[[a]]"], ids=["string", "ints", "map", "nested"]
)
def test_topics_must_be_a_list_of_words(tmp_path: Path, value: str) -> None:
    assert field_error(tmp_path, TITLE, DATE, f"topics: {value}") == (
        "'topics' must be a list of words",
        4,
        "e.g. topics: [research, awards]",
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [("open science", "open science"), ("économie", "économie"), ("a/b", "a/b"), ("''", ""), ("-x", "-x")],
    ids=["space", "accent", "slash", "empty", "dash-first"],
)
def test_invalid_topic(tmp_path: Path, value: str, shown: str) -> None:
    assert field_error(tmp_path, TITLE, DATE, "author: x", f"topics: [research, {value}]") == (
        f"topic {shown!r} is not a valid topic",
        5,
        "use lowercase letters, digits and '-', e.g. open-science",
    )


@pytest.mark.parametrize(
    "name",
    ["../x.pdf", "/etc/passwd", "files/x.pdf", "..\\x.pdf", ".", "..", ""],
    ids=["dotdot", "absolute", "subfolder", "backslash", "dot", "parent", "empty"],
)
def test_attachment_must_be_a_plain_file_name(tmp_path: Path, name: str) -> None:
    assert field_error(tmp_path, TITLE, DATE, f"attachments: ['{name}']") == (
        f"attachment {name!r} must be a plain file name",
        4,
        "put the file in the same folder as the release",
    )


@pytest.mark.parametrize("value", ["x.pdf", "[1]", "{a: b}"], ids=["string", "int", "map"])
def test_attachments_must_be_a_list_of_names(tmp_path: Path, value: str) -> None:
    assert field_error(tmp_path, TITLE, DATE, f"attachments: {value}") == (
        "'attachments' must be a list of file names",
        4,
        "",
    )


@pytest.mark.parametrize("value", ["'true'", "1", "maybe", "[true]"])
def test_draft_must_be_a_boolean(tmp_path: Path, value: str) -> None:
    assert field_error(tmp_path, TITLE, DATE, f"draft: {value}") == ("'draft' must be true or false", 4, "")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("english", "english"),
        ("en_US", "en_US"),
        ("e", "e"),
        ("en-", "en-"),
        ("12", "12"),
        ("[en]", "['en']"),
    ],
)
def test_invalid_lang(tmp_path: Path, value: str, shown: str) -> None:
    assert field_error(tmp_path, TITLE, DATE, f"lang: {value}") == (
        f"'lang' must be a language tag such as en or fr-FR; got {shown!r}",
        4,
        "",
    )


def test_too_long_author(tmp_path: Path) -> None:
    assert field_error(tmp_path, TITLE, DATE, "author: " + "a" * 201) == (
        "'author' is 201 characters long; the limit is 200",
        4,
        "",
    )


def test_too_long_summary(tmp_path: Path) -> None:
    assert field_error(tmp_path, TITLE, DATE, "summary: " + "s" * 2001) == (
        "'summary' is 2001 characters long; the limit is 2000",
        4,
        "",
    )


def test_error_describes_itself_as_file_line_reason_hint(tmp_path: Path) -> None:
    error = refused(tmp_path, doc(TITLE, DATE, "titel: x"), "2020/x.md")
    assert str(error) == "2020/x.md:4: unknown key 'titel' (did you mean 'title'?)"


# ---- attachments on disk ------------------------------------------------------------------------


def test_missing_attachment_file(tmp_path: Path) -> None:
    error = refused(tmp_path, doc(TITLE, DATE, "attachments: [missing.pdf]"), "2020/x.md")
    assert (error.reason, error.line, error.hint) == (
        "attachment 'missing.pdf' not found next to the release",
        4,
        "copy it to 2020/missing.pdf",
    )


def test_missing_attachment_at_the_top_of_the_folder(tmp_path: Path) -> None:
    error = refused(tmp_path, doc(TITLE, DATE, "attachments: [missing.pdf]"))
    assert error.hint == "copy it to ./missing.pdf"


def test_attachment_that_is_a_folder_is_not_found(tmp_path: Path) -> None:
    (tmp_path / "kit.pdf").mkdir()
    error = refused(tmp_path, doc(TITLE, DATE, "attachments: [kit.pdf]"))
    assert error.reason == "attachment 'kit.pdf' not found next to the release"


def test_attachment_symlink_leaving_the_folder_is_not_read(tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the announcements folder")
    (folder / "leak.txt").symlink_to(secret)
    error = refused(folder, doc(TITLE, DATE, "attachments: [leak.txt]"))
    assert error.reason == "attachment 'leak.txt' not found next to the release"


# ---- encodings and raw bytes --------------------------------------------------------------------


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    ann = read(tmp_path, b"\xef\xbb\xbf" + doc("title: Été", DATE).encode())
    assert ann.title == "Été"


@pytest.mark.parametrize("newline", ["\r\n", "\r"], ids=["crlf", "cr"])
def test_other_line_endings_are_accepted(tmp_path: Path, newline: str) -> None:
    text = doc(TITLE, DATE, "summary: |", "  One.", "  Two.", body="Body.").replace("\n", newline)
    ann = read(tmp_path, text)
    assert (ann.title, ann.summary, ann.body_html) == ("Carnot label renewed", "One.\nTwo.", "<p>Body.</p>\n")


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
def test_line_numbers_with_any_line_ending(tmp_path: Path, newline: str) -> None:
    text = doc(TITLE, DATE, "author: x", "lang: english").replace("\n", newline)
    error = refused(tmp_path, text)
    assert (error.reason, error.line) == (
        "'lang' must be a language tag such as en or fr-FR; got 'english'",
        5,
    )


@pytest.mark.parametrize("newline", ["\r\n", "\r"], ids=["crlf", "cr"])
def test_yaml_error_line_numbers_with_other_line_endings(tmp_path: Path, newline: str) -> None:
    error = refused(tmp_path, doc(TITLE, DATE, "author: a: b").replace("\n", newline))
    assert (error.reason, error.line) == ("invalid YAML: mapping values are not allowed here", 4)


def test_invalid_utf8_names_the_line_of_the_bad_byte(tmp_path: Path) -> None:
    raw = b"---\ntitle: A\ndate: 2020-02-12\nauthor: Caf\xe9\n---\nBody.\n"
    offset = raw.index(b"\xe9")
    error = refused(tmp_path, raw)
    assert (error.reason, error.line, error.hint) == (
        f"not valid UTF-8 (byte 0xe9 at offset {offset})",
        4,
        "save the file as UTF-8",
    )


def test_invalid_utf8_after_a_bom_names_the_right_byte_and_line(tmp_path: Path) -> None:
    raw = b"\xef\xbb\xbf---\ntitle: A\ndate: 2020-02-12\n---\n\xe9t\xe9\n"
    error = refused(tmp_path, raw)
    assert (error.reason, error.line) == ("not valid UTF-8 (byte 0xe9 at offset 37)", 5)
    assert raw[37] == 0xE9


def test_invalid_utf8_in_the_body_with_crlf(tmp_path: Path) -> None:
    raw = b"---\r\ntitle: A\r\ndate: 2020-02-12\r\n---\r\n\r\nOK\r\n\xff\r\n"
    assert refused(tmp_path, raw).line == 7


def test_invalid_utf8_line_in_a_cr_only_file(tmp_path: Path) -> None:
    raw = b"---\rtitle: A\rdate: 2020-02-12\rauthor: Caf\xe9\r---\rBody.\r"
    assert refused(tmp_path, raw).line == 4


def test_utf16_file_is_reported_as_not_utf8(tmp_path: Path) -> None:
    error = refused(tmp_path, doc(TITLE, DATE).encode("utf-16"))
    assert (error.reason, error.line) == ("not valid UTF-8 (byte 0xff at offset 0)", 1)


def test_nul_bytes_mean_a_binary_file(tmp_path: Path) -> None:
    error = refused(tmp_path, doc(TITLE, DATE).encode() + b"\x00\x00\x01\x02")
    assert (error.reason, error.line) == ("contains NUL bytes: this looks like a binary file", 1)


@pytest.mark.parametrize(
    "raw", [b"", b" ", b"\n\n", b" \t\r\n \n"], ids=["empty", "space", "newlines", "mixed"]
)
def test_empty_or_blank_file_is_refused(tmp_path: Path, raw: bytes) -> None:
    error = refused(tmp_path, raw)
    assert (error.reason, error.line) == ("file is empty", 1)


def test_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    raw = doc(TITLE, DATE, body="x" * 200).encode()
    small = IngestOptions(PARIS, "en", len(raw) - 1)
    error = refused(tmp_path, raw, options=small)
    assert (error.reason, error.line, error.hint) == (
        f"file is {len(raw)} bytes; the limit is {len(raw) - 1}",
        None,
        "raise max_file_bytes in config.yaml if this is intended",
    )


def test_file_exactly_at_the_size_limit_is_accepted(tmp_path: Path) -> None:
    raw = doc(TITLE, DATE).encode()
    assert read(tmp_path, raw, options=IngestOptions(PARIS, "en", len(raw))).title == "Carnot label renewed"


def test_the_size_limit_is_checked_before_decoding(tmp_path: Path) -> None:
    error = refused(tmp_path, b"\xff" * 50, options=IngestOptions(PARIS, "en", 10))
    assert error.reason == "file is 50 bytes; the limit is 10"


# ---- regressions: bugs found by these tests, now fixed -----------------------------------------


@pytest.mark.parametrize("char", ["\x07", "\x1b", "\x80", "\ufffe"], ids=["bel", "esc", "c1", "fffe"])
def test_raw_control_character_in_front_matter_is_an_announcement_error(tmp_path: Path, char: str) -> None:
    error = refused(tmp_path, doc(TITLE, DATE, f"author: Press{char}office"))
    assert error.line == 4


@pytest.mark.parametrize(
    "line",
    ["date: 2020-02-30", "date: 2020-13-01", "date: 0000-01-01", "date: 2020-02-12T09:00:00+25:00"],
    ids=["feb30", "month13", "year0", "offset25h"],
)
def test_impossible_unquoted_date_is_an_announcement_error(tmp_path: Path, line: str) -> None:
    error = refused(tmp_path, doc(TITLE, line))
    assert error.line == 3
    assert line.removeprefix("date: ") in error.reason  # says which value is wrong


@pytest.mark.parametrize("line", [r'id: "carnot\n"', r'lang: "en\n"'], ids=["id", "lang"])
def test_identifier_with_a_trailing_newline_is_refused(tmp_path: Path, line: str) -> None:
    error = refused(tmp_path, doc(TITLE, DATE, line))
    assert error.line == 4


def test_unknown_boolean_looking_key_names_its_line(tmp_path: Path) -> None:
    error = refused(tmp_path, doc(TITLE, DATE, "on: 2020-02-12"))
    assert (error.reason, error.line) == ("unknown key 'on'", 4)


def test_norwegian_language_tag(tmp_path: Path) -> None:
    assert read(tmp_path, doc(TITLE, DATE, "lang: no")).lang == "no"


@pytest.mark.parametrize("escape", [r"\u2028", r"\u2029"], ids=["line-sep", "para-sep"])
def test_title_with_a_unicode_line_separator_is_refused(tmp_path: Path, escape: str) -> None:
    error = refused(tmp_path, doc(f'title: "One{escape}two"', DATE))
    assert (error.reason, error.line) == ("'title' must be a single line", 2)


# ---- contacts, doi and link ----------------------------------------------------------------------


def test_contacts_doi_and_link(tmp_path: Path) -> None:
    ann = read(
        tmp_path,
        doc(
            TITLE,
            DATE,
            "contacts:",
            "  - {name: Jane Doe, role: Press officer, email: Press@Example.ORG, phone: +33 1 23 45 67 89}",
            "  - name: Paul Martin",
            "doi: https://doi.org/10.1234/ABC.5678",
            "link: https://example.org/paper?id=1&lang=en",
        ),
    )
    assert ann.contacts == (
        Contact("Jane Doe", "Press officer", "press@example.org", "+33 1 23 45 67 89"),
        Contact("Paul Martin"),
    )
    assert (ann.doi, ann.link) == ("10.1234/ABC.5678", "https://example.org/paper?id=1&lang=en")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("contacts: Jane Doe", "'contacts' must be a list of name/email/phone mappings"),
        ("contacts: [{email: a@example.org}]", "every contact needs a 'name'"),
        ("contacts: [{name: A, mail: a@example.org}]", "unknown contact key 'mail'"),
        ("contacts: [{name: A, phone: call me}]", "contact phone 'call me' is not a phone number"),
        ('contacts: [{name: "A\\nB"}]', "contact name 'A\\nB' is too long or has control characters"),
        ("doi: 11.1234/x", "'doi' must be a DOI such as 10.1234/abcd; got '11.1234/x'"),
        ("link: javascript:alert(1)", "'link' must be an http(s) address; got 'javascript:alert(1)'"),
        ("link: https://exa mple.org", "'link' must be an http(s) address; got 'https://exa mple.org'"),
        ("link: /relative/path", "'link' must be an http(s) address; got '/relative/path'"),
    ],
    ids=[
        "not-a-list",
        "no-name",
        "unknown-key",
        "phone",
        "newline",
        "doi",
        "javascript",
        "space",
        "relative",
    ],
)
def test_bad_contacts_doi_and_link(tmp_path: Path, line: str, reason: str) -> None:
    assert field_error(tmp_path, TITLE, DATE, line)[:2] == (reason, 4)


def test_a_bad_contact_email_says_why(tmp_path: Path) -> None:
    reason, line, _ = field_error(tmp_path, TITLE, DATE, "contacts: [{name: A, email: not-an-address}]")
    assert reason.startswith("contact email 'not-an-address' is not valid: ")
    assert line == 4


def test_at_most_ten_contacts(tmp_path: Path) -> None:
    people = ", ".join(f"{{name: P{i}}}" for i in range(11))
    assert field_error(tmp_path, TITLE, DATE, f"contacts: [{people}]")[:2] == (
        "'contacts' lists 11 people; the limit is 10",
        4,
    )


# ---- times in named zones ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-03-29T10:00 Europe/Paris", "2026-03-29T08:00:00+00:00"),  # summer time began that night
        ("2026-10-25T03:30 Europe/Paris", "2026-10-25T02:30:00+00:00"),  # just after the change back
        ("2026-03-29T10:00:00 UTC", "2026-03-29T10:00:00+00:00"),
        ("2026-07-01T09:00 America/New_York", "2026-07-01T13:00:00+00:00"),
    ],
)
def test_publish_at_in_a_named_zone(tmp_path: Path, value: str, expected: str) -> None:
    ann = read(tmp_path, doc(TITLE, DATE, f"publish_at: {value}"))
    assert ann.publish_at is not None
    assert ann.publish_at.astimezone(UTC).isoformat() == expected


@pytest.mark.parametrize(
    ("value", "reason", "hint"),
    [
        (
            "2026-03-29T02:30 Europe/Paris",
            "'publish_at' 2026-03-29T02:30 Europe/Paris does not exist: "
            "the clocks skip that hour (daylight saving time)",
            "choose a time outside the change, or give an offset such as +01:00",
        ),
        (
            "2026-10-25T02:30 Europe/Paris",
            "'publish_at' 2026-10-25T02:30 Europe/Paris happens twice: "
            "the clocks go back that hour (daylight saving time)",
            "give an offset instead: +02:00 for the first time, +01:00 for the second",
        ),
        (
            "2026-03-29T10:00 Europe/Atlantis",
            "'publish_at' names an unknown time zone 'Europe/Atlantis'",
            "use an IANA name such as Europe/Paris",
        ),
        (
            "2026-03-29T10:00 Europe/../../etc/passwd",
            "'publish_at' names an unknown time zone 'Europe/../../etc/passwd'",
            "use an IANA name such as Europe/Paris",
        ),
        (
            "2026-03-29T10:00+01:00 Europe/Paris",
            "'publish_at' gives a zone name after a date alone or after an offset: "
            "'2026-03-29T10:00+01:00 Europe/Paris'",
            "",
        ),
    ],
    ids=["dst-gap", "dst-fold", "unknown-zone", "path-as-zone", "offset-and-zone"],
)
def test_publish_at_in_a_named_zone_is_never_guessed(
    tmp_path: Path, value: str, reason: str, hint: str
) -> None:
    assert field_error(tmp_path, TITLE, DATE, f"publish_at: {value}") == (reason, 4, hint)


@pytest.mark.parametrize("value", ["2020", "2020-02-12"])
def test_an_id_yaml_reads_as_a_number_or_a_date_is_taken_as_written(tmp_path: Path, value: str) -> None:
    assert read(tmp_path, doc(TITLE, DATE, f"id: {value}")).id == value


def test_markdown_nested_deeper_than_the_parser_keeps_is_refused_not_cut(tmp_path: Path) -> None:
    body = "Intro.\n\n" + "> " * 60 + "the deepest words\n\nAfter.\n"
    error = refused(tmp_path, doc(TITLE, DATE, body=body))
    assert (error.reason, error.line, error.hint) == (
        "the Markdown is nested more than 50 levels deep",
        8,  # the quote: "---" 1, title 2, date 3, "---" 4, blank 5, "Intro." 6, blank 7
        "flatten the lists or quotes: deeper text would be lost",
    )


def test_markdown_nested_twenty_levels_keeps_every_word(tmp_path: Path) -> None:
    body = "".join("  " * n + f"- level {n}\n" for n in range(12)) + "\n" + "> " * 21 + "quote 21\n\nAfter.\n"
    html = read(tmp_path, doc(TITLE, DATE, body=body)).body_html
    assert all(f"level {n}" in html for n in range(12))
    assert "quote 21" in html
    assert "After." in html

"""The text part of mails: release HTML as plain text at 72 columns."""

from __future__ import annotations

from service.render.plaintext import WIDTH, html_to_plain


def test_paragraphs_are_wrapped_and_headings_underlined() -> None:
    text = html_to_plain("<p>" + "word " * 40 + "</p><h2>The Carnot label</h2><p>End.</p>")
    blocks = text.split("\n\n")
    assert all(len(line) <= WIDTH for line in blocks[0].splitlines())
    assert blocks[1:] == ["The Carnot label\n----------------", "End."]


def test_list_items_are_on_consecutive_lines_and_numbered_lists_keep_numbers() -> None:
    text = html_to_plain(
        "<p>Intro</p><ul><li>One " + "long " * 20 + "item</li><li>Two</li></ul>"
        "<ol><li>First</li><li>Second</li></ol><p>After</p>"
    )
    assert text.split("\n\n") == [
        "Intro",
        "- One long long long long long long long long long long long long long\n"
        "  long long long long long long long item\n- Two",
        "1. First\n2. Second",
        "After",
    ]


def test_a_line_break_starts_a_new_line() -> None:
    text = html_to_plain("<p>Jane Doe, Press officer<br>press@example.org<br>\n+33 1 23 45 67 89</p>")
    assert text == "Jane Doe, Press officer\npress@example.org\n+33 1 23 45 67 89"


def test_links_are_written_after_their_text() -> None:
    assert html_to_plain('<p>See <a href="https://example.org/x">the paper</a>.</p>') == (
        "See the paper <https://example.org/x>."
    )


def test_preformatted_text_is_kept() -> None:
    assert html_to_plain("<pre>a  b\n  c</pre>") == "a  b\n  c"

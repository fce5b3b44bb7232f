"""Markdown rendering and HTML sanitising, checked on the parsed output rather than on substrings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser

import pytest

from service.ingest.sanitize import find_illegal, first_paragraph_text, markdown_to_html, strip_illegal

FORBIDDEN_TAGS = {
    "script", "iframe", "object", "embed", "style", "form", "input", "button", "meta", "base", "link",
    "svg", "math", "frame", "frameset", "applet", "textarea", "noscript", "template",
}  # fmt: skip
URL_ATTRIBUTES = {
    "href",
    "src",
    "action",
    "formaction",
    "srcset",
    "poster",
    "background",
    "xlink:href",
    "data",
}
BAD_SCHEMES = ("javascript:", "vbscript:", "data:")
_INVISIBLE = re.compile(r"[\x00-\x20]")


@dataclass
class Element:
    tag: str
    attrs: dict[str, str | None]


class Parsed(HTMLParser):
    """Every start tag of a fragment, with its attributes, and the text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(Element(tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def tags(self) -> list[str]:
        return [e.tag for e in self.elements]

    def find(self, tag: str) -> list[Element]:
        return [e for e in self.elements if e.tag == tag]


def parse(html: str) -> Parsed:
    parser = Parsed()
    parser.feed(html)
    parser.close()
    return parser


def render(markdown: str) -> Parsed:
    return parse(markdown_to_html(markdown))


def assert_safe(html: str) -> None:
    """No active content: no dangerous tags, no event handlers, no script or data URLs anywhere."""
    for element in parse(html).elements:
        assert element.tag not in FORBIDDEN_TAGS, html
        for name, value in element.attrs.items():
            assert not name.startswith("on"), html
            if name in URL_ATTRIBUTES and value is not None:
                scheme = _INVISIBLE.sub("", value).lower()
                assert not scheme.startswith(BAD_SCHEMES), html
            if name == "style" and value is not None:
                assert "url(" not in value.lower(), html
                assert "expression(" not in value.lower(), html


# ---- rendering ----------------------------------------------------------------------------------


def test_headings_render() -> None:
    page = render("# Title\n\n## Section\n\n### Detail\n\nText.")
    assert page.tags() == ["h1", "h2", "h3", "p"]
    assert "".join(page.text).split() == ["Title", "Section", "Detail", "Text."]


def test_table_renders_with_alignment() -> None:
    page = render("| Name | Score |\n|:-----|------:|\n| Ada  | 10 |\n| Bob  | 7 |\n")
    assert page.tags() == ["table", "thead", "tr", "th", "th", "tbody", "tr", "td", "td", "tr", "td", "td"]
    assert [e.attrs.get("style") for e in page.find("th")] == ["text-align:left", "text-align:right"]
    assert [t for t in (s.strip() for s in page.text) if t] == ["Name", "Score", "Ada", "10", "Bob", "7"]


def test_footnotes_render_with_links_both_ways() -> None:
    page = render("A claim.[^src]\n\n[^src]: The source.")
    refs = [e for e in page.find("a") if e.attrs.get("class") is None]
    backs = [e for e in page.find("a") if e.attrs.get("class") == "footnote-backref"]
    notes = [e for e in page.find("li") if e.attrs.get("class") == "footnote-item"]
    assert len(refs) == len(backs) == len(notes) == 1
    assert refs[0].attrs["href"] == "#" + str(notes[0].attrs["id"])
    assert backs[0].attrs["href"] == "#" + str(refs[0].attrs["id"])
    assert [e.attrs.get("class") for e in page.find("section")] == ["footnotes"]
    assert page.find("sup")[0].attrs.get("class") == "footnote-ref"


def test_strikethrough_and_emphasis_render() -> None:
    assert render("~~old~~ **new** *now*").tags() == ["p", "s", "strong", "em"]


def test_safe_raw_html_is_kept() -> None:
    page = render(
        'Some <em>raw</em> and <strong>bold</strong> and <a href="https://example.org/x">a link</a>.'
    )
    assert page.tags() == ["p", "em", "strong", "a"]
    link = page.find("a")[0]
    assert link.attrs["href"] == "https://example.org/x"
    assert link.attrs["rel"] == "noopener noreferrer"


@pytest.mark.parametrize(
    "url",
    ["https://example.org/a", "http://example.org/b", "mailto:press@example.org", "tel:+33123456789", "/x"],
)
def test_allowed_link_schemes_are_kept(url: str) -> None:
    assert render(f"[link]({url})").find("a")[0].attrs["href"] == url


def test_https_image_is_kept() -> None:
    image = render("![Logo](https://example.org/logo.png)").find("img")[0]
    assert (image.attrs["src"], image.attrs["alt"]) == ("https://example.org/logo.png", "Logo")


# ---- hostile input ------------------------------------------------------------------------------

HOSTILE = [
    pytest.param("<script>alert(1)</script>", id="script"),
    pytest.param("Text <SCRIPT SRC=https://evil.example/x.js></SCRIPT>", id="script-upper"),
    pytest.param('<iframe src="https://evil.example"></iframe>', id="iframe"),
    pytest.param('<img src="x.png" onerror="alert(1)">', id="img-onerror"),
    pytest.param('<a href="https://example.org" onclick="steal()">x</a>', id="a-onclick"),
    pytest.param('<p onmouseover="alert(1)">hover</p>', id="p-onmouseover"),
    pytest.param("<svg onload=alert(1)><circle r=1></circle></svg>", id="svg-onload"),
    pytest.param('<a href="javascript:alert(1)">x</a>', id="raw-javascript"),
    pytest.param('<a href="JaVaScRiPt:alert(1)">x</a>', id="raw-javascript-case"),
    pytest.param('<a href="java&#x09;script:alert(1)">x</a>', id="raw-javascript-tab-entity"),
    pytest.param('<a href="  javascript:alert(1)">x</a>', id="raw-javascript-spaces"),
    pytest.param("[x](javascript:alert(1))", id="md-javascript"),
    pytest.param("[x](<javascript:alert(1)>)", id="md-javascript-angle"),
    pytest.param("[x][r]\n\n[r]: javascript:alert(1)", id="md-javascript-reference"),
    pytest.param("<javascript:alert(1)>", id="md-javascript-autolink"),
    pytest.param('<a href="vbscript:msgbox(1)">x</a>', id="vbscript"),
    pytest.param('<a href="data:text/html,<script>alert(1)</script>">x</a>', id="raw-data-link"),
    pytest.param("[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)", id="md-data-link"),
    pytest.param("![x](data:image/png;base64,iVBORw0KGgo=)", id="md-data-image"),
    pytest.param('<img src="data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=">', id="raw-data-image"),
    pytest.param('<object data="https://evil.example/x.swf"></object><embed src="x.swf">', id="object-embed"),
    pytest.param('<form action="https://evil.example"><input name="p"><button>Go</button></form>', id="form"),
    pytest.param('<meta http-equiv="refresh" content="0;url=https://evil.example">', id="meta-refresh"),
    pytest.param('<base href="https://evil.example/">', id="base"),
    pytest.param("<style>body{display:none}</style>", id="style"),
    pytest.param('<div style="background:url(javascript:alert(1))">x</div>', id="div-style"),
    pytest.param('<math><mi xlink:href="javascript:alert(1)">x</mi></math>', id="math"),
]


@pytest.mark.parametrize("markdown", HOSTILE)
def test_active_content_is_removed(markdown: str) -> None:
    assert_safe(markdown_to_html(markdown))


def test_script_content_is_dropped_with_the_tag() -> None:
    page = render("Before <script>alert('owned')</script> after")
    assert "script" not in page.tags()
    assert "owned" not in "".join(page.text)


def test_event_handler_is_removed_but_the_element_kept() -> None:
    page = render('<img src="https://example.org/x.png" onerror="alert(1)" alt="x">')
    assert page.find("img")[0].attrs == {"src": "https://example.org/x.png", "alt": "x"}


def test_javascript_link_keeps_its_text_but_loses_its_href() -> None:
    page = render('<a href="javascript:alert(1)">click me</a>')
    assert all("href" not in a.attrs for a in page.find("a"))
    assert "click me" in "".join(page.text)


def test_illegal_characters_are_removed_from_rendered_html() -> None:
    html = markdown_to_html("Bell\x07 and \ufffe marks")
    assert find_illegal(html) is None
    assert "".join(parse(html).text).strip() == "Bell and  marks"


def test_markdown_is_nfc_normalised() -> None:
    assert "".join(render("Cafe\u0301").text).strip() == "Caf\u00e9"


@pytest.mark.parametrize(
    "style",
    [
        "background-image:url(data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=)",
        "background-image:url(https://tracker.example/pixel.gif)",
        "position:fixed;top:0;left:0;width:100%;height:100%;z-index:9999",
    ],
    ids=["data-url", "tracking-url", "overlay"],
)
def test_table_cell_style_is_limited_to_text_alignment(style: str) -> None:
    page = render(f'<table><tr><td style="text-align:right;{style}">x</td></tr></table>')
    assert [e.attrs.get("style") for e in page.find("td")] == ["text-align:right"]


# ---- text hygiene -------------------------------------------------------------------------------


def test_strip_illegal_removes_controls_and_surrogates_but_keeps_whitespace() -> None:
    dirty = "a\tb\nc\r\x00\x01\x08\x0b\x0c\x0e\x1f\x7f\ud800\udfff\ufffe\uffffd é 😀"
    assert strip_illegal(dirty) == "a\tb\nc\rd é 😀"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("clean\ttext\n", None),
        ("a\x07b", "\x07"),
        ("x\ud800", "\ud800"),
        ("\uffff", "\uffff"),
        ("\x00\x01", "\x00"),
    ],
)
def test_find_illegal_returns_the_first_bad_character(text: str, expected: str | None) -> None:
    assert find_illegal(text) == expected


def test_first_paragraph_text_unescapes_entities_and_collapses_whitespace() -> None:
    html = (
        "<h1>Head</h1>\n"
        "<p>Tom &amp; Jerry\n   say &lt;hi&gt; &quot;loud&quot;\t&#233;t&eacute;\u00a0!</p>\n"
        "<p>Second</p>"
    )
    assert first_paragraph_text(html) == 'Tom & Jerry say <hi> "loud" été !'


def test_first_paragraph_text_drops_inline_tags() -> None:
    assert first_paragraph_text('<p>A <em>big</em> <a href="https://x.org">win</a>.</p>') == "A big win."


def test_first_paragraph_text_without_a_paragraph_uses_all_text() -> None:
    assert first_paragraph_text("<ul>\n<li>One</li>\n<li>Two</li>\n</ul>") == "One Two"


def test_first_paragraph_text_cuts_at_a_word_boundary() -> None:
    html = "<p>" + "alpha beta, gamma; delta. " * 10 + "</p>"
    text = first_paragraph_text(html, limit=40)
    assert text == "alpha beta, gamma; delta. alpha beta…"
    assert first_paragraph_text(html, limit=29) == "alpha beta, gamma; delta…"


def test_first_paragraph_text_short_enough_is_untouched() -> None:
    assert first_paragraph_text("<p>exactly ten</p>", limit=11) == "exactly ten"

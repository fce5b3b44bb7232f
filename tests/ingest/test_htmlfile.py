"""HTML releases (.html, .htm): real pages, decoded and parsed the way the reader does, no mocks."""

from __future__ import annotations

import codecs
import contextlib
import re
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.errors import AnnouncementError
from service.ingest.frontmatter import Metadata
from service.ingest.htmlfile import DATE_META, NO_DATE_HINT, NO_TITLE_HINT, decode_html, parse_html
from service.ingest.options import IngestOptions

PARIS = ZoneInfo("Europe/Paris")
OPTIONS = IngestOptions(PARIS, "en", 5_000_000)
SOURCE = "release.html"
LEAD = "The Carnot Institutes have again been awarded the Carnot label."
FEB_12 = datetime(2020, 2, 12, tzinfo=PARIS)

# A page as a CMS exports it: site banner and menu, the article with its own header, an aside, a footer.
EXPORTED = """<!DOCTYPE html>
<html lang="en-GB">
<head>
<meta charset="utf-8">
<title>Two Carnot institutes keep their label | News | IMT</title>
<meta name="description" content="Two IMT Carnot institutes   keep their label.">
<meta property="og:site_name" content="IMT">
<meta property="article:published_time" content="2020-02-11T18:00:00+01:00">
<link rel="stylesheet" href="/site.css">
<script>window.dataLayer = [];</script>
</head>
<body>
<header class="site"><a href="/"><img src="/logo.png" alt="IMT"></a>
<nav><ul><li><a href="/news">News</a></li><li><a href="/contact">Contact</a></li></ul></nav></header>
<main>
<article>
<header>
<p class="kicker">Research</p>
<h1>Two Carnot institutes <br>keep their label</h1>
<p class="byline">By the press office, <time datetime="2020-02-12T09:30:00+01:00">12 Feb.</time></p>
</header>
<p>Press release</p>
<p>The Carnot Institutes have again been awarded the <strong>Carnot label</strong>.</p>
<p>On <time datetime="2020-02-07">7 February 2020</time>, the Ministry announced the winners.</p>
<h2>The Carnot label</h2>
<ul><li>Created in 2006</li><li>Awarded by the <a href="https://www.enseignementsup-recherche.gouv.fr/">ministry</a></li></ul>
<form action="/subscribe"><label>Email <input name="email"></label><button>Subscribe</button></form>
<footer>Tags: research</footer>
</article>
<aside><h2>Related</h2><p>Paris, 3 March 2019</p></aside>
</main>
<footer><p>© IMT 2020</p><nav><a href="/legal">Legal</a></nav></footer>
<script src="/analytics.js"></script>
</body>
</html>
"""
EXPORTED_BODY = (
    "<p>The Carnot Institutes have again been awarded the <strong>Carnot label</strong>.</p>\n"
    "<p>On <time>7 February 2020</time>, the Ministry announced the winners.</p>\n"
    "<h2>The Carnot label</h2>\n"
    "<ul><li>Created in 2006</li><li>Awarded by the "
    '<a href="https://www.enseignementsup-recherche.gouv.fr/" rel="noopener noreferrer">ministry</a>'
    "</li></ul>"
)
FRENCH = """<!DOCTYPE html>
<html lang="fr">
<head><meta charset="utf-8"><title>Label Carnot</title></head>
<body>
<main>
<p>Communiqué de presse</p>
<p>Paris, le 12 février 2020</p>
<h1>Le label Carnot renouvelé pour deux instituts de l’IMT</h1>
<p>Les instituts Carnot Télécom &amp; Société Numérique et M.I.N.E.S obtiennent à nouveau le label.</p>
<h2>Le label Carnot</h2>
<p>Créé en 2006, le label Carnot développe la recherche partenariale.</p>
</main>
</body>
</html>
"""


def parse(raw: bytes | str, options: IngestOptions = OPTIONS) -> tuple[Metadata, str]:
    """Decode and parse a page the way the reader does: decoder, then parser."""
    data = raw.encode() if isinstance(raw, str) else raw
    return parse_html(decode_html(data, SOURCE, options), SOURCE, options)


def refused(raw: bytes | str) -> AnnouncementError:
    with pytest.raises(AnnouncementError) as info:
        parse(raw)
    assert type(info.value) is AnnouncementError
    assert info.value.file == SOURCE
    return info.value


def page(body: str, head: str = "", lang: str = "en") -> str:
    return f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>{head}</head>\n<body>\n{body}\n</body>\n</html>\n'


# ---- a page exported from a site -------------------------------------------------------------------


def test_exported_page_metadata() -> None:
    meta, _ = parse(EXPORTED)
    assert meta.title == "Two Carnot institutes keep their label"  # the <h1>, its <br> a space
    assert meta.date == datetime.fromisoformat("2020-02-12T09:30:00+01:00")  # <time> wins over <meta>
    assert meta.lang == "en-GB"
    assert meta.summary == "Two IMT Carnot institutes keep their label."  # <meta name="description">
    assert (meta.id, meta.topics, meta.author, meta.attachments) == (None, (), None, ())


def test_exported_page_body_is_the_article_without_the_page_around_it() -> None:
    _, body = parse(EXPORTED)
    assert body == EXPORTED_BODY
    for gone in [
        "News",
        "Subscribe",
        "Tags",
        "Related",
        "Legal",
        "©",
        "dataLayer",
        "Press release",
        "By the",
    ]:
        assert gone not in body


def test_main_without_article_and_body_without_main() -> None:
    in_main = page(
        f"<header><p>IMT</p></header><main><h1>A title</h1><p>Paris, 12 February 2020</p><p>{LEAD}</p></main>"
    )
    in_body = page(f"<h1>A title</h1>\n<p>Paris, 12 February 2020</p>\n<p>{LEAD}</p>\n<footer>Legal</footer>")
    for text in (in_main, in_body):
        meta, body = parse(text)
        assert (meta.title, meta.date, meta.summary) == ("A title", FEB_12, LEAD)
        assert body.replace("\n", "") == f"<p>Paris, 12 February 2020</p><p>{LEAD}</p>"


def test_h1_of_main_outside_the_article() -> None:
    meta, body = parse(
        page(f"<main><h1>A title</h1><article><p>2020-02-12</p><p>{LEAD}</p></article></main>")
    )
    assert (meta.title, meta.date) == ("A title", FEB_12)
    assert body == f"<p>2020-02-12</p><p>{LEAD}</p>"


# ---- title -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "title"),
    [
        ("<title>Two institutes keep their label | IMT</title>", "Two institutes keep their label"),
        ("<title>IMT | News | Two institutes keep their label</title>", "Two institutes keep their label"),
        (
            "<title>Two institutes keep their label - IMT</title>"
            '<meta property="og:site_name" content="IMT">',
            "Two institutes keep their label",
        ),
        (
            "<title>Label \u2013 Two institutes</title>"
            '<meta name="application-name" content="Two institutes">',
            "Label",
        ),
        ("<title>Carnot label - two institutes renewed</title>", "Carnot label - two institutes renewed"),
    ],
)
def test_without_h1_the_page_title_is_used(head: str, title: str) -> None:
    meta, body = parse(page(f"<p>2020-02-12</p><p>{LEAD}</p>", head))
    assert meta.title == title
    assert body == f"<p>2020-02-12</p><p>{LEAD}</p>"


def test_without_h1_nor_page_title_a_heading_before_the_lead_is_the_title() -> None:
    meta, body = parse(page(f"<p>2020-02-12</p><h2>Two institutes keep their label</h2><p>{LEAD}</p>"))
    assert (meta.title, meta.summary) == ("Two institutes keep their label", LEAD)
    assert body == f"<p>2020-02-12</p><p>{LEAD}</p>"


def test_without_any_title_the_lead_sentence_is_the_title() -> None:
    meta, body = parse(page(f"<p>2020-02-12</p><p>Press release</p><p>{LEAD} More text.</p>"))
    assert meta.title == LEAD.removesuffix(".")
    assert body == f"<p>2020-02-12</p><p>{LEAD} More text.</p>"


def test_an_empty_h1_is_skipped_and_markup_in_h1_is_text() -> None:
    meta, _ = parse(
        page(
            '<h1><img src="/logo.png" alt="IMT"></h1><h1>A <em>bold</em> &lt;claim&gt;</h1>'
            f"<p>2020-02-12</p><p>{LEAD}</p>"
        )
    )
    assert meta.title == "A bold <claim>"


def test_no_title_is_refused() -> None:
    error = refused(page('<p>2020-02-12</p><p>Press release</p><img src="/photo.jpg" alt="">'))
    assert (error.reason, error.hint, error.line) == ("no title found", NO_TITLE_HINT, None)


def test_title_too_long_is_refused_at_its_line() -> None:
    error = refused(page(f"<p>2020-02-12</p>\n<h1>{'Long ' * 70}</h1>\n<p>{LEAD}</p>"))
    assert (error.reason, error.line) == ("'title' is 349 characters long; the limit is 300", 6)


# ---- date ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DATE_META)
def test_date_meta_tags(name: str) -> None:
    attribute = "property" if ":" in name else "name"
    meta, _ = parse(
        page(f"<h1>A title</h1><p>{LEAD}</p>", f'<meta {attribute}="{name.upper()}" content="2020-02-12">')
    )
    assert meta.date == FEB_12


@pytest.mark.parametrize(
    ("value", "moment"),
    [
        ("2020-02-12", FEB_12),
        ("2020/02/12", FEB_12),  # citation_publication_date's usual form
        ("2020-02-12T09:30:00+01:00", datetime(2020, 2, 12, 9, 30, tzinfo=timezone(timedelta(hours=1)))),
        ("2020-02-12T08:30Z", datetime(2020, 2, 12, 8, 30, tzinfo=UTC)),
        ("2020-02-12 09:30", datetime(2020, 2, 12, 9, 30, tzinfo=PARIS)),  # a floating time: the site's zone
    ],
)
def test_time_element_forms(value: str, moment: datetime) -> None:
    meta, _ = parse(page(f'<h1>A title</h1><time datetime="{value}">then</time><p>{LEAD}</p>'))
    assert meta.date == moment
    assert meta.date.tzinfo is not None


def test_time_without_datetime_attribute_uses_its_text() -> None:
    meta, _ = parse(page(f"<h1>A title</h1><span><time> 2020-02-12 </time></span><p>{LEAD}</p>"))
    assert meta.date == FEB_12


def test_a_page_with_a_head_only() -> None:
    meta, body = parse('<head><title>A title</title><meta name="date" content="2020-02-12"></head>')
    assert (meta.title, meta.date, meta.summary, body) == ("A title", FEB_12, None, "")


def test_order_time_then_meta_then_dateline() -> None:
    dateline = "<p>Paris, 10 February 2020</p>"
    head = '<meta name="date" content="2020-02-11">'
    time = '<time datetime="2020-02-12">12 February</time>'
    assert parse(page(f"<h1>T</h1>{time}{dateline}<p>{LEAD}</p>", head))[0].date == FEB_12
    assert parse(page(f"<h1>T</h1>{dateline}<p>{LEAD}</p>", head))[0].date == FEB_12 - timedelta(days=1)
    assert parse(page(f"<h1>T</h1>{dateline}<p>{LEAD}</p>"))[0].date == FEB_12 - timedelta(days=2)


def test_a_time_in_the_text_or_a_partial_date_is_not_the_release_date() -> None:
    text = '<p>On <time datetime="2020-02-07">7 February</time>, the Ministry announced it.</p>'
    partial = '<time datetime="2020-02">February</time><time datetime="PT2H">two hours</time>'
    meta, _ = parse(page(f"<h1>A title</h1>{partial}{text}", '<meta name="date" content="2020-02-12">'))
    assert meta.date == FEB_12
    error = refused(page(f"<h1>A title</h1>{partial}{text}"))
    assert (error.reason, error.hint, error.line) == ("no date found", NO_DATE_HINT, None)


def test_dateline_forms_in_the_first_paragraphs() -> None:
    inline = page(f"<h1>T</h1><p><strong>Paris, 12 February 2020</strong> \u2013 {LEAD}</p>")
    meta, body = parse(inline)
    assert (meta.date, meta.summary, meta.lang) == (FEB_12, LEAD, "en")
    assert body == f"<p><strong>Paris, 12 February 2020</strong> \u2013 {LEAD}</p>"  # the page's text is kept
    with_marker = page(f"<h1>T</h1><p>Paris, 12 February 2020<br>\nPress release</p><p>{LEAD}</p>")
    meta, body = parse(with_marker)
    assert (meta.date, meta.summary) == (FEB_12, LEAD)
    assert body == f"<p>Paris, 12 February 2020</p><p>{LEAD}</p>"


def test_a_dateline_far_down_the_page_is_not_read() -> None:
    paragraphs = "".join(f"<p>Paragraph {n}.</p>" for n in range(5))
    error = refused(page(f"<h1>A title</h1>{paragraphs}<p>Paris, 12 February 2020</p>"))
    assert error.reason == "no date found"


def test_no_date_is_refused_and_the_file_time_is_never_used() -> None:
    error = refused(page(f"<h1>A title</h1><p>{LEAD}</p>", "<title>A title</title>"))
    assert (error.reason, error.hint, error.line) == ("no date found", NO_DATE_HINT, None)
    assert error.describe() == f"release.html: no date found ({NO_DATE_HINT})"


@pytest.mark.parametrize(
    ("markup", "reason", "line"),
    [
        ('<time datetime="2020-02-30">x</time>', "<time datetime> is not a valid date: '2020-02-30'", 6),
        (
            '<time datetime="2020-02-12T25:00">x</time>',
            "<time datetime> is not a valid date: '2020-02-12T25:00'",
            6,
        ),
        ("<p>Paris, 31/02/2020</p>", "the dateline gives an impossible date: '31/02/2020'", 6),
        ('<time datetime="1812-02-12">x</time>', "'date' year 1812 is outside 1970-2100", 6),
    ],
)
def test_wrong_dates_are_refused_at_their_line(markup: str, reason: str, line: int) -> None:
    error = refused(page(f"<h1>A title</h1>\n{markup}\n<p>{LEAD}</p>"))
    assert (error.reason, error.line) == (reason, line)


def test_wrong_meta_date_is_refused_at_its_line() -> None:
    error = refused(
        page(f"<h1>A title</h1><p>{LEAD}</p>", '\n<meta name="dcterms.date" content="2020-13-01">')
    )
    assert (error.reason, error.line) == ("<meta dcterms.date> is not a valid date: '2020-13-01'", 4)
    assert error.hint == "use ISO 8601, e.g. 2020-02-12 or 2020-02-12T09:00:00+01:00"


# ---- summary and language -----------------------------------------------------------------------------


def test_summary_is_the_first_paragraph_after_markers_and_datelines() -> None:
    meta, _ = parse(page(f"<h1>T</h1><p>Press release</p><p>12 February 2020</p><p>{LEAD}</p><p>Next.</p>"))
    assert meta.summary == LEAD


def test_a_long_description_is_cut_to_the_summary_limit() -> None:
    words = "word " * 500
    meta, _ = parse(page("<h1>T</h1><p>2020-02-12</p>", f'<meta name="description" content="{words}">'))
    assert meta.summary is not None
    assert len(meta.summary) <= 2000
    assert meta.summary.endswith("word…")


@pytest.mark.parametrize(
    ("html_lang", "dateline", "lang"),
    [
        ("fr", "12 February 2020", "fr"),  # <html lang> wins
        ("fr_FR", "12 February 2020", "fr-FR"),
        ("", "12 février 2020", "fr"),  # else the dateline's month name
        ("", "12 February 2020", "en"),
        ("", "12/02/2020", None),  # the reader then uses default_language
    ],
)
def test_language(html_lang: str, dateline: str, lang: str | None) -> None:
    meta, _ = parse(page(f"<h1>T</h1><p>{dateline}</p><p>{LEAD}</p>", lang=html_lang))
    assert meta.lang == lang


def test_invalid_language_tag_is_refused_at_its_line() -> None:
    error = refused(
        '<!DOCTYPE html>\n<html lang="english language">\n<body><h1>T</h1><p>2020-02-12</p></body></html>'
    )
    assert error.reason == "'lang' must be a language tag such as en or fr-FR; got 'english language'"
    assert error.line == 2


def test_french_page() -> None:
    meta, body = parse(FRENCH)
    assert meta.title == "Le label Carnot renouvelé pour deux instituts de l’IMT"
    assert (meta.date, meta.lang) == (FEB_12, "fr")
    assert meta.summary == (
        "Les instituts Carnot Télécom & Société Numérique et M.I.N.E.S obtiennent à nouveau le label."
    )
    assert "Communiqué de presse" not in body
    assert "renouvelé pour deux" not in body
    assert re.findall(r"<(h2|p)>", body) == ["p", "p", "h2", "p"]
    assert body.startswith("<p>Paris, le 12 février 2020</p>")


# ---- hostile pages ------------------------------------------------------------------------------------


HOSTILE = """<html><head><title>x</title><meta http-equiv="refresh" content="0;url=https://evil.example">
<style>body { background: url(https://evil.example/t.png) }</style></head>
<body onload="steal()">
<h1 onclick="steal()">A title<script>alert('title')</script></h1>
<p>2020-02-12</p>
<p onmouseover="steal()" style="position:fixed">A <a href="javascript:alert(1)">js</a>
<a href=" JaVaScRiPt:alert(2)">js2</a> <a href="data:text/html;base64,PHNjcmlwdD4=">data</a>
<a href="vbscript:msgbox(1)">vb</a> <a href="https://example.org/" target="_blank" onclick="x()">ok</a>
<img src="data:image/png;base64,iVBORw0KGgo=" alt="pixel">
<img src="https://example.org/a.png" onerror="x()" alt="photo">
</p>
<iframe src="https://evil.example/frame">fallback</iframe>
<object data="x.swf">flash</object><embed src="x.swf">
<svg onload="x()"><script>alert(3)</script><text>svg text</text></svg>
<noscript><img src="https://tracker.example/p.gif"></noscript>
<form action="https://evil.example"><input type="password"><button>Log in</button></form>
<script>document.write('<p>injected</p>')</script>
<template><p>template</p></template>
<p><a href="/relative/page">relative</a> <a href="mailto:press@example.org">mail</a></p>
</body></html>
"""
HOSTILE_BODY = (
    '<p>2020-02-12</p>\n<p>A <a rel="noopener noreferrer">js</a>\n<a rel="noopener noreferrer">js2</a> '
    '<a rel="noopener noreferrer">data</a>\n<a rel="noopener noreferrer">vb</a> '
    '<a href="https://example.org/" rel="noopener noreferrer">ok</a>\n'
    '<img src="https://example.org/a.png" alt="photo">\n</p>\n'
    '<p><a href="/relative/page" rel="noopener noreferrer">relative</a> '
    '<a href="mailto:press@example.org" rel="noopener noreferrer">mail</a></p>'
)


def test_hostile_markup_is_sanitised_not_refused() -> None:
    meta, body = parse(HOSTILE)
    assert meta.title == "A title"
    assert body == HOSTILE_BODY
    for gone in [
        "script",
        "alert",
        "steal",
        "on",
        "style",
        "iframe",
        "fallback",
        "flash",
        "svg",
        "tracker",
        "Log in",
        "template",
        "injected",
        "data:",
        "evil",
    ]:
        assert not re.search(rf"\b{gone}\b", body), gone


def test_deeply_nested_markup_is_read_without_crashing() -> None:
    meta, body = parse(page("<h1>T</h1><p>2020-02-12</p>" + "<div>" * 20_000 + "deep" + "</div>" * 20_000))
    assert meta.title == "T"
    assert body.startswith("<p>2020-02-12</p>")


def test_comments_and_processing_instructions_are_dropped() -> None:
    _, body = parse(page("<h1>T</h1><!-- internal note --><p>2020-02-12</p><?php echo 1; ?><p>Text.</p>"))
    assert body == "<p>2020-02-12</p><p>Text.</p>"


def test_a_page_without_content_is_refused() -> None:
    error = refused("<!-- nothing here -->")
    assert (error.reason, error.line) == ("no HTML content", 1)


def test_xhtml_with_an_xml_declaration() -> None:
    xhtml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="fr">\n'
        "<body>\n<h1>Un titre</h1>\n<p>2020-02-30</p>\n</body></html>"
    )
    error = refused(xhtml)
    assert (error.reason, error.line) == ("the dateline gives an impossible date: '2020-02-30'", 5)
    meta, _ = parse(xhtml.replace("2020-02-30", "2020-02-12"))
    assert (meta.title, meta.lang) == ("Un titre", "fr")


# ---- encodings -----------------------------------------------------------------------------------------


def cp1252_page(declaration: str) -> bytes:
    return page(
        "<h1>Le label renouvelé</h1><p>Paris, le 12 février 2020</p><p>L’été.</p>", declaration, lang=""
    ).encode("cp1252")


@pytest.mark.parametrize(
    "declaration",
    [
        '<meta http-equiv="Content-Type" content="text/html; charset=windows-1252">',
        '<meta charset="Windows-1252">',
        "<meta charset=iso-8859-1>",  # means Windows-1252, as in browsers: 0x92 is ’
        '<meta charset="no-such-charset">',  # ignored: UTF-8, else Windows-1252
        "",
    ],
)
def test_windows_1252_pages(declaration: str) -> None:
    raw = cp1252_page(declaration)
    assert b"\x92" in raw
    meta, body = parse(raw)
    assert (meta.title, meta.lang, meta.summary) == ("Le label renouvelé", "fr", "L’été.")
    assert "<p>L’été.</p>" in body


def test_declared_charset_is_used_even_when_utf8_would_decode() -> None:
    raw = page("<h1>Prix : 5 €</h1><p>2020-02-12</p>", "<meta charset=iso-8859-15>").encode("iso-8859-15")
    assert parse(raw)[0].title == "Prix : 5 €"
    # Browsers do the same: the declaration wins, even over bytes that happen to be valid UTF-8.
    utf8 = page("<h1>été</h1><p>2020-02-12</p>", '<meta charset="iso-8859-15">').encode("utf-8")
    assert parse(utf8)[0].title == "Ã©tÃ©"


def test_bytes_that_do_not_match_the_declared_charset_are_refused() -> None:
    raw = page("<h1>Été</h1>", '<meta charset="utf-8">').encode("cp1252")
    error = refused(raw)
    assert (error.reason, error.line) == ("not valid utf-8 as declared (byte 0xc9 at offset 80)", 5)
    assert error.hint == "the page declares charset utf-8: correct the declaration or save the file as UTF-8"


def test_bytes_undefined_in_windows_1252_are_refused() -> None:
    error = refused(b"<h1>T</h1>\n<p>\x81</p>")
    assert (error.reason, error.line) == ("not valid UTF-8 or Windows-1252 (byte 0x81 at offset 14)", 2)


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda s: codecs.BOM_UTF8 + s.encode(), id="utf-8-bom"),
        pytest.param(lambda s: codecs.BOM_UTF16_LE + s.encode("utf-16-le"), id="utf-16-le-bom"),
        pytest.param(lambda s: codecs.BOM_UTF16_BE + s.encode("utf-16-be"), id="utf-16-be-bom"),
        pytest.param(lambda s: s.replace("\n", "\r\n").encode(), id="crlf"),
        pytest.param(
            lambda s: codecs.BOM_UTF16_LE + s.replace("utf-8", "utf-16").encode("utf-16-le"),
            id="utf-16-label",
        ),
    ],
)
def test_byte_order_marks_and_line_endings(encode: object) -> None:
    assert callable(encode)
    assert parse(encode(FRENCH)) == parse(FRENCH)


def test_a_utf16_label_without_byte_order_mark_means_utf8() -> None:
    meta, _ = parse(FRENCH.replace('charset="utf-8"', 'charset="utf-16"'))
    assert meta.title == "Le label Carnot renouvelé pour deux instituts de l’IMT"


def test_non_charset_codecs_are_not_honoured() -> None:
    meta, _ = parse(page("<h1>Title</h1><p>2020-02-12</p>", '<meta charset="base64"><meta charset="utf-7">'))
    assert meta.title == "Title"


def test_nul_bytes_and_utf16_without_bom_are_refused_as_binary() -> None:
    error = refused(FRENCH.encode("utf-16-le"))
    assert (error.reason, error.line) == ("contains NUL bytes: this looks like a binary file", 1)
    assert error.hint == "save the page as UTF-8 (UTF-16 needs a byte order mark)"


def test_decomposed_accents_are_normalised_to_nfc() -> None:
    meta, body = parse(page("<h1>E\u0301te\u0301</h1><p>12 fe\u0301vrier 2020</p>", lang=""))
    assert (meta.title, meta.date, meta.lang) == ("Été", FEB_12, "fr")
    assert "février" in body


def test_control_characters_are_dropped() -> None:
    meta, body = parse(page("<h1>A\x07 title\x0b</h1><p>2020-02-12</p><p>Form\x0cfeed.</p>"))
    assert meta.title == "A title"
    assert "<p>Formfeed.</p>" in body


# ---- whatever the input, an AnnouncementError or a release -------------------------------------------------


@settings(max_examples=150, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600) | st.text(max_size=600).map(str.encode))
def test_any_bytes_give_a_release_or_an_announcement_error(raw: bytes) -> None:
    with contextlib.suppress(AnnouncementError):
        parse(raw)


TAGS = st.sampled_from(
    [
        "h1",
        "h2",
        "p",
        "div",
        "time",
        "article",
        "main",
        "header",
        "nav",
        "br",
        "script",
        "title",
        "meta",
        "html",
    ]
)


@settings(max_examples=150, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            TAGS,
            st.sampled_from(["", "Paris, 12 February 2020", "Press release", LEAD, "2020-02-31", "x" * 400]),
            st.booleans(),
        ),
        max_size=12,
    )
)
def test_any_tag_soup_gives_a_release_or_an_announcement_error(parts: list[tuple[str, str, bool]]) -> None:
    soup = "".join(
        f'<{tag} datetime="{text}" content="{text}" name="date">{text}' + (f"</{tag}>" if close else "")
        for tag, text, close in parts
    )
    try:
        meta, body = parse(soup)
    except AnnouncementError:
        return
    assert meta.title
    assert meta.date.tzinfo is not None
    assert "<script" not in body

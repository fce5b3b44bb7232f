"""Plain-text releases (.txt) through `read_release` and the scan pipeline: real files, no mocks."""

from __future__ import annotations

import codecs
import hashlib
import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from service import jobs
from service.errors import AnnouncementError
from service.ingest.inbox import list_release_files
from service.ingest.options import IngestOptions
from service.ingest.plaintext import NO_DATE_HINT, outline
from service.ingest.reader import is_release_file, read_release
from service.models import Announcement, ReleaseState
from service.render.site import FeedKind
from service.runtime import Components
from tests.conftest import Inbox

DATA = Path(__file__).resolve().parents[1] / "data" / "plaintext"
SEED = (DATA / "seed.txt").read_bytes()  # /work/shared/seed/000_27015f7c70f58c66.txt, unchanged
SEED_SHA256 = "4c435de0da00c7cbf6f106bf5a4f9ed17b8e81bac58eff620c47243ab2950450"
FRENCH = (DATA / "french.txt").read_bytes()
PARIS = ZoneInfo("Europe/Paris")
OPTIONS = IngestOptions(PARIS, "en", 5_000_000)
SEED_LEAD = (
    "The Carnot Institutes Télécom & Société Numérique and M.I.N.E.S, in which the IMT schools are "
    "heavily involved, have again been awarded the Carnot label to develop R&D in companies for the "
    "benefit of the economy."
)
SEED_TITLE = SEED_LEAD.removesuffix(".")
FRENCH_LEAD = (
    "Les instituts Carnot Télécom & Société Numérique et M.I.N.E.S, où les écoles de l’IMT sont très "
    "impliquées, obtiennent à nouveau le label Carnot. Ils développeront la R&D en entreprise au "
    "bénéfice de l’économie."
)


def read(
    folder: Path, content: str | bytes, name: str = "release.txt", options: IngestOptions = OPTIONS
) -> Announcement:
    """Write `content` as a real file in `folder` and read it back the way the service does."""
    path = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return read_release(folder, path, path.read_bytes(), options)


def refused(folder: Path, content: str | bytes, name: str = "release.txt") -> AnnouncementError:
    with pytest.raises(AnnouncementError) as info:
        read(folder, content, name)
    assert info.value.file == name
    return info.value


def paragraphs(html: str) -> list[str]:
    return re.findall(r"<p>(.*?)</p>", html, re.S)


# ---- the seed: a real PDF-to-text export -----------------------------------------------------------


def test_seed_sample_is_the_real_export_byte_for_byte() -> None:
    assert hashlib.sha256(SEED).hexdigest() == SEED_SHA256
    assert SEED.startswith(b"\n \n")  # blank lines made of spaces
    assert b"Press release \n" in SEED


def test_seed_metadata(tmp_path: Path) -> None:
    ann = read(tmp_path, SEED, "2020-02-12-carnot-label.txt")
    assert ann.id == "2020-02-12-carnot-label"
    assert ann.title == SEED_TITLE  # the lead sentence, without '>' and without its full stop
    assert ann.date == datetime(2020, 2, 12, tzinfo=PARIS)
    assert ann.date.isoformat() == "2020-02-12T00:00:00+01:00"
    assert ann.summary == SEED_LEAD
    assert ann.lang == "en"
    assert ann.source == "2020-02-12-carnot-label.txt"
    assert (ann.topics, ann.author, ann.publish_at, ann.attachments, ann.draft) == ((), None, None, (), False)


def test_seed_body(tmp_path: Path) -> None:
    html = read(tmp_path, SEED).body_html
    assert "Press release" not in html
    assert "&gt;" not in html  # the lead marker is gone, not escaped
    assert html.startswith(f"<p><em>Paris, February 12th 2020</em> — {SEED_LEAD.replace('&', '&amp;')}</p>")
    assert "<h2>The Carnot label</h2>" in html
    texts = paragraphs(html)
    assert len(texts) == 8
    assert all(text.strip() for text in texts)  # no empty paragraphs
    assert all("\n" not in text and "  " not in text for text in texts)  # re-flowed
    assert "support the professionalization of business relations services, the internationalization" in html
    assert texts[1].startswith(
        "On 7 February 2020, the Ministry for Higher Education, Research and Innovation announced"
    )
    # A short line ending a sentence inside a block ends its paragraph (the original layout).
    assert texts[6].endswith("in response to their needs.")
    assert texts[7].startswith("The Carnot label is awarded to public research structures")
    assert html.index("<h2>The Carnot label</h2>") < html.index(texts[6])
    assert "Institut Mines-Télécom" in html
    assert "<p></p>" not in html


def test_outline_gives_the_dateline_and_sections_for_announce_check(tmp_path: Path) -> None:
    assert outline(read(tmp_path, SEED).body_html) == ("Paris, February 12th 2020", ("The Carnot label",))
    assert outline("<p>No dateline &amp; no section.</p>") == (None, ())


def test_seed_with_a_word_split_across_lines(tmp_path: Path) -> None:
    split = SEED.replace(
        b"the professionalization of business relations \n",
        b"the profes-\nsionalization of business relations ",
    )
    assert split != SEED
    html = read(tmp_path, split).body_html
    assert "support the professionalization of business relations services, the internationalization" in html
    assert "profes-" not in html


# ---- re-flowing rules --------------------------------------------------------------------------------


HYPHENS = """Paris, 12 February 2020

Press release

The profes-
sionalization of Institut Mines-
Télécom is a well-known fact, well-
known to socio-
economic players and to IMT -
the institute.
"""


def test_hyphenation_rule(tmp_path: Path) -> None:
    text = paragraphs(read(tmp_path, HYPHENS).body_html)[0]
    assert text == (
        "<em>Paris, 12 February 2020</em> — The professionalization of Institut Mines-Télécom is a "
        "well-known fact, well-known to socioeconomic players and to IMT - the institute."
    )


def test_soft_hyphen_at_a_line_end_joins_and_disappears(tmp_path: Path) -> None:
    ann = read(tmp_path, "2020-02-12\n\nThe profes\u00ad\nsionalization of re\u00adsearch.\n")
    assert ann.summary == "The professionalization of research."


def test_text_is_escaped_then_sanitised(tmp_path: Path) -> None:
    ann = read(tmp_path, "2020-02-12\n\nA <script>alert(1)</script> & <b>bold</b> claim.\n")
    assert paragraphs(ann.body_html) == [
        "<em>2020-02-12</em> — A &lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt; claim."
    ]
    assert ann.title == "A <script>alert(1)</script> & <b>bold</b> claim"


def test_a_last_short_line_is_a_paragraph_not_a_heading(tmp_path: Path) -> None:
    html = read(tmp_path, "2020-02-12\n\nThe lead.\n\nA heading\n\nText.\n\nThe press office\n").body_html
    assert "<h2>A heading</h2>" in html
    assert html.endswith("<p>The press office</p>")


# ---- French releases and datelines -----------------------------------------------------------------


def test_french_release(tmp_path: Path) -> None:
    ann = read(tmp_path, FRENCH, "Communiqué label Carnot.txt")
    assert ann.id == "communique-label-carnot"
    assert ann.title == "Le label Carnot renouvelé pour deux instituts de l’IMT"  # the title line
    assert ann.date == datetime(2020, 2, 12, tzinfo=PARIS)
    assert ann.lang == "fr"
    assert ann.summary == FRENCH_LEAD
    assert "Communiqué de presse" not in ann.body_html
    assert "renouvelé pour deux instituts" not in ann.body_html  # the title is not repeated in the body
    assert paragraphs(ann.body_html) == [
        f"<em>Paris, le 12 février 2020</em> — {FRENCH_LEAD.replace('&', '&amp;')}",
        "Le 7 février 2020, le ministère de l’Enseignement supérieur, de la Recherche et de l’Innovation "
        "a annoncé les lauréats. Le label récompense la très grande professionnalisation des relations "
        "avec les entreprises de l’Institut Mines-Télécom.",
        "Créé en 2006, le label Carnot développe la recherche partenariale des laboratoires publics avec "
        "les acteurs socio-économiques, à la demande de ceux-ci.",
    ]
    assert "<h2>Le label Carnot</h2>" in ann.body_html


@pytest.mark.parametrize(
    ("dateline", "day", "lang"),
    [
        ("Paris, February 12th  2020", "2020-02-12", "en"),
        ("Paris, 12 February 2020", "2020-02-12", "en"),
        ("Wednesday, February 12, 2020", "2020-02-12", "en"),
        ("Saint-Étienne, Feb. 3, 2021", "2021-02-03", "en"),
        ("Paris, le 12 février 2020", "2020-02-12", "fr"),
        ("Paris, 12 février 2020", "2020-02-12", "fr"),
        ("le 1er mars 2021", "2021-03-01", "fr"),
        ("Aix-en-Provence, le mercredi 12 février 2020", "2020-02-12", "fr"),
        ("Paris, 12/02/2020", "2020-02-12", "en"),  # numeric: no language, the default
        ("12/02/2020", "2020-02-12", "en"),
        ("12.02.2020", "2020-02-12", "en"),
        ("2020-02-12", "2020-02-12", "en"),
    ],
)
def test_dateline_forms(tmp_path: Path, dateline: str, day: str, lang: str) -> None:
    ann = read(tmp_path, f"\n{dateline}\n\nThe lead sentence. More text.\n")
    assert ann.date == datetime.fromisoformat(day).replace(tzinfo=PARIS)
    assert ann.lang == lang
    assert ann.title == "The lead sentence"
    assert ann.summary == "The lead sentence. More text."


def test_numeric_date_without_language_clue_uses_the_default_language(tmp_path: Path) -> None:
    options = IngestOptions(ZoneInfo("UTC"), "de", 5_000_000)
    ann = read(tmp_path, "12/02/2020\n\nDer Text.\n", options=options)
    assert (ann.lang, ann.date.isoformat()) == ("de", "2020-02-12T00:00:00+00:00")


def test_a_dateline_can_start_the_lead(tmp_path: Path) -> None:
    ann = read(
        tmp_path,
        "Communiqué de presse\n\nParis, le 12 février 2020 \u2013 Le groupe ouvre un\nlaboratoire.\n",
    )
    assert (ann.date, ann.lang) == (datetime(2020, 2, 12, tzinfo=PARIS), "fr")
    assert ann.summary == "Le groupe ouvre un laboratoire."
    assert paragraphs(ann.body_html) == [
        "<em>Paris, le 12 février 2020</em> — Le groupe ouvre un laboratoire."
    ]


def test_dates_inside_the_body_are_not_datelines(tmp_path: Path) -> None:
    error = refused(tmp_path, "Press release\n\nOn 7 February 2020, the Ministry announced the winners.\n")
    assert error.reason == "no date found in the text"


def test_impossible_dateline_is_refused_with_its_line(tmp_path: Path) -> None:
    error = refused(tmp_path, "Press release\n\nParis, 31/02/2020\n\nText.\n")
    assert (error.reason, error.line) == ("the dateline gives an impossible date: '31/02/2020'", 3)
    assert error.hint == "check the day and the month (numeric dates are day/month/year)"


def test_dateline_year_out_of_range_is_refused_with_its_line(tmp_path: Path) -> None:
    error = refused(tmp_path, "\nParis, 12 February 1812\n\nText.\n")
    assert (error.reason, error.line) == ("'date' year 1812 is outside 1970-2100", 2)


# ---- no date: refused, never the file's time -------------------------------------------------------------


def test_no_date_is_refused(tmp_path: Path) -> None:
    error = refused(tmp_path, "Press release\n\nA title\n\nThe lead.\n")
    assert (error.reason, error.hint, error.line) == ("no date found in the text", NO_DATE_HINT, None)
    assert error.describe() == (
        "release.txt: no date found in the text (add a dateline such as 'Paris, 12 February 2020' "
        "or a 'date:' front matter line)"
    )


def test_no_date_with_front_matter_without_date_is_refused(tmp_path: Path) -> None:
    error = refused(tmp_path, "---\ntitle: A title\n---\n\nThe lead.\n")
    assert error.reason == "no date found in the text"


def test_no_text_at_all_is_refused(tmp_path: Path) -> None:
    error = refused(tmp_path, "Paris, 12 February 2020\n\nPress release\n")
    assert (error.reason, error.hint) == (
        "no title found in the text",
        "add a title line or a 'title:' front matter line",
    )


# ---- front matter --------------------------------------------------------------------------------------


def test_front_matter_overrides_the_text(tmp_path: Path) -> None:
    ann = read(tmp_path, (DATA / "front-matter.txt").read_bytes())
    assert ann.title == "Two Carnot institutes keep their label"
    assert ann.date == datetime.fromisoformat("2020-02-13T09:30:00+01:00")
    assert ann.topics == ("research", "carnot")
    assert ann.summary == "The Carnot Institutes have again been awarded the Carnot label."
    assert paragraphs(ann.body_html)[0] == (
        "<em>Paris, February 12th 2020</em> — The Carnot Institutes have again been awarded the Carnot label."
    )


def test_front_matter_may_give_only_some_fields(tmp_path: Path) -> None:
    ann = read(tmp_path, b"---\nid: carnot-2020\nlang: fr-FR\nsummary: Short.\n---\n" + SEED)
    assert (ann.id, ann.lang, ann.summary, ann.title) == ("carnot-2020", "fr-FR", "Short.", SEED_TITLE)
    assert ann.date == datetime(2020, 2, 12, tzinfo=PARIS)


def test_front_matter_date_stands_in_for_a_missing_dateline(tmp_path: Path) -> None:
    ann = read(tmp_path, "---\ndate: 2020-02-12\n---\n\nPress release\n\nThe lead.\n")
    assert (ann.title, ann.date) == ("The lead", datetime(2020, 2, 12, tzinfo=PARIS))
    assert ann.body_html == "<p>The lead.</p>"


def test_front_matter_is_validated_like_markdown(tmp_path: Path) -> None:
    error = refused(tmp_path, "---\ntitel: A title\n---\n\n2020-02-12\n\nThe lead.\n")
    assert (error.reason, error.line, error.hint) == ("unknown key 'titel'", 2, "did you mean 'title'?")


# ---- encodings and line endings --------------------------------------------------------------------


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda b: codecs.BOM_UTF8 + b, id="utf-8-bom"),
        pytest.param(lambda b: codecs.BOM_UTF16_LE + b.decode().encode("utf-16-le"), id="utf-16-le-bom"),
        pytest.param(lambda b: codecs.BOM_UTF16_BE + b.decode().encode("utf-16-be"), id="utf-16-be-bom"),
        pytest.param(lambda b: b.decode().encode("cp1252"), id="cp1252"),
        pytest.param(lambda b: b.replace(b"\n", b"\r\n"), id="crlf"),
        pytest.param(lambda b: b.replace(b"\n", b"\r"), id="cr"),
        pytest.param(
            lambda b: b.decode().encode("utf-16").replace(b"\n\x00", b"\r\x00\n\x00"), id="utf-16-crlf"
        ),
    ],
)
@pytest.mark.parametrize("sample", [SEED, FRENCH], ids=["seed", "french"])
def test_encodings_give_the_same_announcement(tmp_path: Path, sample: bytes, encode: object) -> None:
    assert callable(encode)
    expected = read(tmp_path / "utf-8", sample)
    assert read(tmp_path / "encoded", encode(sample)) == expected


def test_cp1252_french_sample_keeps_its_accents_and_apostrophes(tmp_path: Path) -> None:
    raw = FRENCH.decode().encode("cp1252")
    assert {b"\x92", b"\xe9", b"\xe8"} <= {bytes([byte]) for byte in raw}  # ’ é è in Windows-1252
    ann = read(tmp_path, raw)
    assert ann.title == "Le label Carnot renouvelé pour deux instituts de l’IMT"


def test_decomposed_accents_are_normalised_to_nfc(tmp_path: Path) -> None:
    ann = read(tmp_path, "Paris, le 12 fe\u0301vrier 2020\n\nLe label est renouvele\u0301.\n")
    assert (ann.title, ann.lang) == ("Le label est renouvelé", "fr")


def test_bytes_undefined_in_cp1252_are_refused(tmp_path: Path) -> None:
    error = refused(tmp_path, b"2020-02-12\n\nThe lead \x81.\n")
    assert (error.reason, error.line) == ("not valid UTF-8 or Windows-1252 (byte 0x81 at offset 21)", 3)


def test_utf16_without_bom_is_refused_as_binary(tmp_path: Path) -> None:
    error = refused(tmp_path, SEED.decode().encode("utf-16-le"))
    assert error.reason == "contains NUL bytes: this looks like a binary file"
    assert error.hint == "save the text as UTF-8 (UTF-16 needs a byte order mark)"


def test_markdown_stays_utf8_only(tmp_path: Path) -> None:
    error = refused(tmp_path, "---\ntitle: Été\ndate: 2020-02-12\n---\n".encode("cp1252"), "release.md")
    assert error.reason == "not valid UTF-8 (byte 0xc9 at offset 11)"


# ---- the drop folder and the scan pipeline --------------------------------------------------------------


def test_txt_files_are_release_files_but_error_reports_are_not(tmp_path: Path) -> None:
    for name in ["a.txt", "b.TXT", "a.error.txt", "notes.csv"]:
        (tmp_path / name).write_bytes(SEED)
    assert is_release_file(tmp_path / "b.TXT")
    assert [f.source for f in list_release_files(tmp_path)] == ["a.txt", "b.TXT"]


async def test_a_txt_release_is_published_and_in_the_atom_feed(parts: Components, inbox: Inbox) -> None:
    inbox.write("2020-02-12-carnot-label.txt", SEED)
    report = await jobs.scan(parts.jobs)
    assert (report.created, report.problems) == (("2020-02-12-carnot-label",), ())
    release = await parts.releases.get("2020-02-12-carnot-label")
    assert release is not None
    assert release.state is ReleaseState.PUBLISHED
    assert release.announcement.title == SEED_TITLE
    assert release.announcement.date == datetime(2020, 2, 12, tzinfo=parts.settings.tz)
    feed = await parts.views.feed(FeedKind.ATOM)
    assert feed is not None
    atom = feed.body.decode()
    assert "<title>The Carnot Institutes Télécom &amp; Société Numérique and M.I.N.E.S," in atom
    assert "2020-02-12-carnot-label" in atom
    assert "&lt;h2&gt;The Carnot label&lt;/h2&gt;" in atom

"""A corpus of plain-text releases of different shapes, languages and encodings, read like the service does.

Each file in tests/data/plaintext/ (but the seed and the files of test_plaintext.py) has one entry in
CORPUS with what a reader must see: the title, date, language, lead, section headings, paragraphs,
lists and contact blocks, or the refusal.
"""

from __future__ import annotations

import codecs
import html
import re
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from service.errors import AnnouncementError
from service.ingest.options import IngestOptions
from service.ingest.plaintext import NO_DATE_HINT, outline
from service.ingest.reader import read_release

DATA = Path(__file__).resolve().parents[1] / "data" / "plaintext"
PARIS = ZoneInfo("Europe/Paris")
OPTIONS = IngestOptions(PARIS, "en", 5_000_000)
# Header and end marks that must never reach the body.
MARKS = re.compile(r"\b(?:press|news|media) release|communiqué|for immediate release|\bends\b|###", re.I)


@dataclass(frozen=True)
class Expected:
    """What one corpus file must give; `error` instead of the rest for a refused file."""

    name: str
    encoding: str  # how the bytes on disk are written: checked, so the file stays what it claims
    title: str = ""
    date: str = ""  # ISO 8601, midnight in Europe/Paris unless the front matter says otherwise
    lang: str = ""
    lead: str = ""  # the start of the summary (the lead paragraph)
    dateline: str | None = None  # as shown in <em> before the lead
    headings: tuple[str, ...] = ()
    paragraphs: int = 0  # <p> elements, contact blocks included
    lists: tuple[tuple[str, tuple[str, ...]], ...] = ()  # ("ul" | "ol", items)
    contacts: tuple[tuple[str, ...], ...] = ()  # the lines (split at <br>) of each <p> with an email
    error: str | None = None


CORPUS = [
    Expected(
        "en-title-above-dateline.txt",
        "utf-8",
        title="Northbridge University opens a hydrogen research centre in Lyon",
        date="2021-03-03T00:00:00+01:00",
        lang="en",
        lead="Northbridge University today opened the Hydrogen Systems Centre, a research facility in Lyon's",
        dateline="Lyon, 3 March 2021",
        headings=("Industrial partnerships", "About Northbridge University", "Press contact"),
        paragraphs=6,
        lists=(
            (
                "ul",
                (
                    "an electrolysis test bench able to run at industrial pressure;",
                    "a storage and safety laboratory, shared with partner companies;",
                    "a modelling team working on the integration of hydrogen into regional energy networks.",
                ),
            ),
        ),
        contacts=(
            (
                "Claire Dubois",
                "Head of Media Relations",
                "claire.dubois@northbridge.example",
                "+33 4 72 00 12 34",
            ),
        ),
    ),
    Expected(
        "fr-inline-dateline-cp1252.txt",
        "cp1252",
        title="La Métropole de Valmont lance « Vélo’v Campus » pour les étudiants",
        date="2021-03-03T00:00:00+01:00",
        lang="fr",
        lead="La Métropole de Valmont et les universités de la ville lancent aujourd’hui « Vélo’v Campus »",
        dateline="VALMONT, 3 mars 2021",
        headings=(
            "Un cœur de cible de 150 000 étudiants",
            "À propos de la Métropole de Valmont",
            "Contact presse",
        ),
        paragraphs=5,
        lists=(
            (
                "ol",
                (
                    "dès le 15 mars, 40 stations sur les campus de la Doua, de Bron et des Quais ;",
                    "en septembre 2021, 25 stations supplémentaires près des résidences universitaires ;",
                    "en 2022, l’ouverture aux personnels des établissements.",
                ),
            ),
        ),
        contacts=(("Julien Martin", "julien.martin@valmont-metropole.example", "04 78 63 40 40"),),
    ),
    Expected(
        "en-numeric-date-crlf.txt",
        "utf-8-crlf",
        title="The Nursing Workforce Institute has published its annual survey of nurse staffing in England",
        date="2020-02-12T00:00:00+01:00",
        lang="en",
        lead=(
            "The Nursing Workforce Institute has published its annual survey of nurse staffing in England. "
            "More than 9,000 nurses"
        ),
        dateline="London, 12/02/2020",
        headings=("Key findings", "Notes to editors"),
        paragraphs=5,
        lists=(
            (
                "ul",
                (
                    "64% of respondents said their last shift was understaffed",
                    "41% said they had no time to take a break",
                    "one in five is planning to leave the profession within two years",
                ),
            ),
        ),
        # An unlabelled block of short lines with an email address and a phone number.
        contacts=(("Tom Hughes", "Media Officer", "press.office@nwi.example", "020 7647 3633"),),
    ),
    Expected(
        "fr-iso-date-utf16.txt",
        "utf-16-le-bom",
        title="Le musée de la Soierie accueille 1,2 million de visiteurs en 2019",
        date="2020-02-12T00:00:00+01:00",
        lang="fr",  # an ISO date says no language: the French marker does
        lead="Le musée de la Soierie a accueilli 1 215 000 visiteurs en 2019, un record",
        dateline="2020-02-12",
        headings=("Les expositions les plus visitées", "Perspectives 2020"),
        paragraphs=3,
        lists=(
            (
                "ul",
                (
                    "« Prison, au-delà des murs » (310 000 visiteurs) ;",
                    "« Yokainoshima, esprits du Japon » (280 000 visiteurs) ;",
                    "« Antarctica » (195 000 visiteurs).",
                ),
            ),
        ),
    ),
    Expected("en-no-dateline.txt", "utf-8", error="no date found in the text"),
    Expected("fr-no-dateline.txt", "utf-8", error="no date found in the text"),
    Expected(
        "en-front-matter-date.txt",
        "utf-8",
        title="Night trains return between Paris and Berlin",
        date="2022-06-01T00:00:00+02:00",  # the front matter stands in for the missing dateline
        lang="en",
        lead="Rail operators will reintroduce a direct night train between Paris and Berlin from December",
        headings=("Contacts",),
        paragraphs=3,
        contacts=(("Night Rail press office", "press@nightrail.example"),),
    ),
    Expected(
        "en-pdf-export.txt",
        "utf-8",
        title=(
            "Aerostruct and the University of Toulouse have signed a five-year research agreement on the "
            "recycling of composite materials used in aircraft structures"
        ),
        date="2021-11-09T00:00:00+01:00",
        lang="en",
        lead="Aerostruct and the University of Toulouse have signed a five-year research agreement",
        dateline="Toulouse, Tuesday 9 November 2021",
        headings=("1. Context", "2. Funding"),  # numbered headings, not one-item lists
        paragraphs=4,
        lists=(
            (
                "ol",
                (
                    "the chemical recovery of carbon fibres from end-of-life parts;",
                    "the design of thermoplastic parts that can be reshaped and repaired;",
                    "life-cycle analysis of the recovered materials.",
                ),
            ),
        ),
    ),
    Expected(
        "en-inline-dateline-contacts.txt",
        "utf-8",
        title="Halden Diagnostics receives CE marking for its respiratory panel",
        date="2021-03-03T00:00:00+01:00",
        lang="en",
        lead="Halden Diagnostics today announced that its respiratory panel test has received CE marking",
        dateline="LYON, France, March 3, 2021",
        headings=("Media contacts", "About Halden Diagnostics"),
        paragraphs=5,
        contacts=(
            ("Sophie Laurent", "+33 4 78 87 20 00", "sophie.laurent@halden.example"),
            ("James Whitaker", "+44 20 7946 0321", "james.whitaker@halden.example"),
        ),
    ),
    Expected(
        "fr-title-and-dateline-cp1252.txt",
        "cp1252",
        title="Inauguration de la nouvelle médiathèque de Saint-Aubin",
        date="2022-02-05T00:00:00+01:00",
        lang="fr",
        lead="La Ville de Saint-Aubin inaugure samedi la médiathèque « La Grand-Plage »,",
        dateline="Saint-Aubin, le samedi 5 février 2022",
        headings=("Pour plus d’informations",),
        paragraphs=4,
        lists=(
            (
                "ul",
                (
                    "10 h : visite inaugurale en présence de la maire ;",
                    "14 h : lectures et ateliers pour les enfants ;",
                    "18 h : concert de l’Orchestre d’harmonie municipal.",
                ),
            ),
        ),
        contacts=(
            (
                "Service de presse de la Ville de Saint-Aubin",
                "presse@ville-saint-aubin.example",
                "03 20 66 46 00",
            ),
        ),
    ),
    Expected(
        "en-latin1-about-ends.txt",
        "latin-1",
        title="Lothian Water to replace 400 km of water mains by 2025",
        date="2020-09-02T00:00:00+02:00",
        lang="en",
        lead=(
            "Lothian Water will replace 400 kilometres of ageing water mains over the next five years, "
            "in a £1.1 billion programme"
        ),
        dateline="Edinburgh, Wednesday 2 Sept. 2020",
        headings=("About Lothian Water", "PRESS CONTACT"),
        paragraphs=5,
        lists=(
            (
                "ul",
                (
                    "Letters at least four weeks before work starts in their street.",
                    "Water supply interruptions limited to four hours.",
                ),
            ),
        ),
        contacts=(("Fiona Reid, fiona.reid@lothianwater.example, 0131 555 0142",),),
    ),
    Expected(
        "fr-numbered-blocks-bom.txt",
        "utf-8-bom",
        title=(
            "Le conseil d’administration de l’Agence régionale du numérique a adopté hier trois décisions "
            "relatives à la bande des 26 GHz"
        ),
        date="2023-07-01T00:00:00+02:00",
        lang="fr",
        lead="Le conseil d’administration de l’Agence régionale du numérique a adopté hier",
        dateline="Paris, le 1er juillet 2023",
        headings=("Contacts presse",),
        paragraphs=3,
        lists=(
            (
                "ol",  # items separated by blank lines are one list
                (
                    "L’ouverture d’une consultation publique jusqu’au 15 septembre.",
                    "Le lancement d’une procédure d’attribution pour les réseaux privés des industriels.",
                    "La publication d’un calendrier de libération des fréquences d’ici à 2025.",
                ),
            ),
        ),
        contacts=(("Agence régionale du numérique", "Service de presse", "presse@arn.example"),),
    ),
]


def check_encoding(raw: bytes, encoding: str) -> None:
    """The file is written the way its entry says (so a re-save in an editor cannot go unnoticed)."""
    boms = {"utf-16-le-bom": codecs.BOM_UTF16_LE, "utf-8-bom": codecs.BOM_UTF8}
    if encoding in boms:
        assert raw.startswith(boms[encoding])
        return
    assert (b"\r\n" in raw) == (encoding == "utf-8-crlf")
    if encoding in ("cp1252", "latin-1"):
        raw.decode(encoding)
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")
    else:
        raw.decode("utf-8")


def texts(pattern: str, body: str) -> list[str]:
    return [html.unescape(text) for text in re.findall(pattern, body, re.S)]


def test_every_corpus_file_has_an_entry() -> None:
    others = {"seed.txt", "french.txt", "front-matter.txt"}  # tests/ingest/test_plaintext.py
    assert {path.name for path in DATA.glob("*.txt")} - others == {entry.name for entry in CORPUS}
    assert len(CORPUS) >= 10


@pytest.mark.parametrize("expected", CORPUS, ids=[entry.name for entry in CORPUS])
def test_corpus_file(expected: Expected) -> None:
    path = DATA / expected.name
    raw = path.read_bytes()
    check_encoding(raw, expected.encoding)
    if expected.error is not None:
        with pytest.raises(AnnouncementError) as info:
            read_release(DATA, path, raw, OPTIONS)
        assert (info.value.file, info.value.reason, info.value.hint) == (
            expected.name,
            expected.error,
            NO_DATE_HINT,
        )
        return
    ann = read_release(DATA, path, raw, OPTIONS)
    body = ann.body_html
    assert ann.title == expected.title
    assert ann.date.isoformat() == expected.date
    assert ann.lang == expected.lang
    assert ann.summary.startswith(expected.lead)
    assert outline(body) == (expected.dateline, expected.headings)
    paragraphs = texts(r"<p>(.*?)</p>", body)
    assert len(paragraphs) == expected.paragraphs
    lead = paragraphs[0].removeprefix(f"<em>{expected.dateline}</em> — " if expected.dateline else "")
    assert lead == ann.summary  # the lead is the first paragraph, after the dateline
    lists = [
        (kind, tuple(texts(r"<li>(.*?)</li>", items)))
        for kind, items in re.findall(r"<([uo]l)>(.*?)</\1>", body, re.S)
    ]
    assert lists == list(expected.lists)
    # Every contact block of the corpus has an email address; its lines stay lines, and nothing else has <br>.
    contacts = [tuple(text.split("<br>\n")) for text in paragraphs if "@" in text]
    assert all("@" in text for text in paragraphs if "<br>" in text)
    assert contacts == list(expected.contacts)
    flowed = [text.replace("<br>\n", "") for text in paragraphs]
    assert all("\n" not in text and "  " not in text for text in flowed)  # re-flowed, but for <br>
    assert "<p></p>" not in body
    assert ann.title not in paragraphs + texts(r"<h2>(.*?)</h2>", body)  # a title line is not repeated
    assert MARKS.search(html.unescape(body)) is None
    assert "&gt;" not in body  # the lead's quote marks are gone, not escaped

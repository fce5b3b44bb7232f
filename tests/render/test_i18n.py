"""Translations: the catalogs cover every template string, mails and pages speak one language each."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2
import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from jinja2.exceptions import SecurityError

from service.errors import ConfigError
from service.models import Attachment, Contact, Release
from service.render.bulletin import MailRenderer, MessageTemplate
from service.render.environment import (
    LANGUAGES,
    catalog_languages,
    language_name,
    localdate,
    make_environment,
)
from service.render.pages import PageRenderer
from service.render.site import Site
from tests.render.test_bulletin import NOW, READER, SENDER, SITE, sample

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "templates"
LOCALES = TEMPLATES / "locales"
PLACEHOLDER = re.compile(r"%\(\w+\)s|<[^>]*>")

Msgid = str | tuple[str, str]


# --- the catalogs ----------------------------------------------------------------------------------


def extracted() -> dict[Msgid, list[str]]:
    """Every message of the templates, found exactly as `pybabel extract -F babel.cfg` finds them."""
    with (REPO / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg, "babel.cfg")  # type: ignore[no-untyped-call]
    found: dict[Msgid, list[str]] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(TEMPLATES), method_map, options_map
    ):
        msgid: Msgid = message if isinstance(message, str) else (message[0], message[1])
        found.setdefault(msgid, []).append(f"{filename}:{lineno}")
    return found


def catalog(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as fp:
        return read_po(fp, locale=locale)


def forms_of(string: object) -> tuple[str, ...]:
    """A translation's text, or each of its plural forms ("" where a form is missing)."""
    forms = string if isinstance(string, tuple | list) else (string,)
    return tuple(form if isinstance(form, str) else "" for form in forms) or ("",)


def translated_languages() -> list[str]:
    return sorted(p.parents[1].name for p in LOCALES.glob("*/LC_MESSAGES/messages.po"))


def test_templates_have_messages_to_translate() -> None:
    messages = extracted()
    assert "Press contacts" in messages  # a web page and a mail
    assert "Page not found" in messages
    assert ("This link is valid for %(num)s hour.", "This link is valid for %(num)s hours.") in messages
    assert "fr" in translated_languages()


def test_template_is_up_to_date() -> None:
    """messages.pot lists what the templates contain: rerun pybabel extract after editing one."""
    pot = {m.id for m in catalog(LOCALES / "messages.pot") if m.id}
    assert pot == set(extracted())


@pytest.mark.parametrize("lang", translated_languages())
def test_every_template_message_is_translated(lang: str) -> None:
    """A new string in a template fails here until each catalog translates it (not fuzzily)."""
    po = catalog(LOCALES / lang / "LC_MESSAGES" / "messages.po", lang)
    missing = []
    for msgid, where in extracted().items():
        message = po.get(msgid[0] if isinstance(msgid, tuple) else msgid)
        if message is None or message.fuzzy or not all(forms_of(message.string)):
            missing.append(f"{where[0]}: {msgid!r}")
    assert missing == [], f"untranslated in {lang}: run pybabel update, then translate"
    assert list(po.check()) == []  # e.g. no misspelt %(name)s placeholder


def test_languages_offered_are_english_and_the_catalogs() -> None:
    assert ("en", *translated_languages()) == LANGUAGES
    assert [language_name(code) for code in ("en", "fr", "pt-BR", "xx")] == [
        "English", "Français", "Português (Brasil)", "xx"
    ]  # fmt: skip


def test_a_catalog_added_to_a_templates_folder_becomes_a_language(tmp_path: Path) -> None:
    (tmp_path / "locales" / "de" / "LC_MESSAGES").mkdir(parents=True)
    (tmp_path / "locales" / "de" / "LC_MESSAGES" / "messages.po").write_text("")
    assert catalog_languages(tmp_path) == ("en", "de")
    assert catalog_languages(tmp_path / "nowhere") == ("en",)


def write_po(folder: Path, lang: str, body: str) -> Path:
    po = folder / "locales" / lang / "LC_MESSAGES" / "messages.po"
    po.parent.mkdir(parents=True)
    header = 'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=utf-8\\n"\n\n'
    po.write_text(header + body, encoding="utf-8")
    return po


def test_fuzzy_and_empty_entries_are_not_used(tmp_path: Path) -> None:
    write_po(
        tmp_path,
        "fr",
        '#, fuzzy\nmsgid "Downloads"\nmsgstr "Chargements"\n\n'
        'msgid "Topics"\nmsgstr ""\n\n'
        'msgid "Newer"\nmsgstr "Plus récents"\n',
    )
    env = make_environment(tmp_path)
    template = env.from_string('{{ _("Downloads") }}|{{ _("Topics") }}|{{ _("Newer") }}')
    assert template.render(lang="fr") == "Downloads|Topics|Plus récents"


def test_a_misspelt_placeholder_stops_the_service_at_start(tmp_path: Path) -> None:
    po = write_po(
        tmp_path, "fr", '#, python-format\nmsgid "Published %(date)s"\nmsgstr "Publié le %(data)s"\n'
    )
    with pytest.raises(ConfigError, match=re.escape(str(po))):
        make_environment(tmp_path)


def test_a_broken_catalog_stops_the_service_at_start(tmp_path: Path) -> None:
    po = write_po(tmp_path, "fr", 'msgid "Topics"\nmgsstr "Thèmes"\n')
    with pytest.raises(ConfigError, match=f"templates_dir.*{re.escape(str(po))}.*line 5"):
        make_environment(tmp_path)


# --- the environment -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env() -> jinja2.Environment:
    return make_environment(TEMPLATES)


@pytest.mark.parametrize(
    ("lang", "expected"),
    [("fr", "Téléchargements"), ("fr-FR", "Téléchargements"), ("FR_ca", "Téléchargements"),
     ("en", "Downloads"), ("en-GB", "Downloads"), ("de", "Downloads"), ("", "Downloads")],
)  # fmt: skip
def test_the_catalog_follows_the_primary_subtag_of_lang(
    env: jinja2.Environment, lang: str, expected: str
) -> None:
    assert env.from_string('{{ _("Downloads") }}').render(lang=lang) == expected


def test_without_lang_templates_are_english(env: jinja2.Environment) -> None:
    assert env.from_string('{{ _("Downloads") }}').render() == "Downloads"


def test_variables_are_escaped_in_html_but_not_in_text(env: jinja2.Environment) -> None:
    env = env.overlay(
        loader=jinja2.DictLoader(
            {
                "x.html.j2": '{{ _("Receive %(site)s by email.", site=title) }}',
                "x.txt.j2": '{{ _("Receive %(site)s by email.", site=title) }}',
                "t.html.j2": "{% trans t=title %}Receive {{ t }} by email.{% endtrans %}",
                "n.html.j2": '{{ ngettext("%(site)s: new release (%(num)s)", '
                '"%(site)s: new releases (%(num)s)", n, site=title) }}',
            }
        )
    )
    title = "<b>R&D</b>"
    assert env.get_template("x.html.j2").render(lang="fr", title=title) == (
        "Recevoir &lt;b&gt;R&amp;D&lt;/b&gt; par courriel."
    )
    assert env.get_template("t.html.j2").render(lang="en", title=title) == (
        "Receive &lt;b&gt;R&amp;D&lt;/b&gt; by email."
    )
    assert env.get_template("x.txt.j2").render(lang="fr", title=title) == "Recevoir <b>R&D</b> par courriel."
    plural = env.get_template("n.html.j2")
    assert plural.render(lang="fr", title="S", n=1) == "S : nouveau communiqué (1)"
    assert plural.render(lang="fr", title="S", n=2) == "S : nouveaux communiqués (2)"
    assert plural.render(lang="en", title="S", n=1) == "S: new release (1)"


@pytest.mark.parametrize(
    "source",
    [
        "{{ _.__globals__ }}",
        "{{ gettext.__code__ }}",
        "{{ ngettext.__closure__ }}",
        "{{ _('Downloads').__class__.__mro__ }}",
        "{{ ''.__class__.__mro__ }}",
    ],
)
def test_sandbox_still_refuses_unsafe_attributes(env: jinja2.Environment, source: str) -> None:
    with pytest.raises(SecurityError):
        env.from_string(source).render(lang="fr")


# --- dates -----------------------------------------------------------------------------------------

LATE = datetime(2020, 2, 11, 23, 30, tzinfo=UTC)  # already the 12th in Paris


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        ("en", "February 12, 2020"),
        ("fr", "12 février 2020"),
        ("fr-FR", "12 février 2020"),
        ("en-GB", "12 February 2020"),  # Babel knows the region's order
        ("xx-unknown", "February 12, 2020"),
    ],
)
def test_localdate_per_locale(lang: str, expected: str) -> None:
    assert localdate(LATE, "Europe/Paris", lang) == expected


def test_localdate_defaults_to_english_and_converts_the_zone() -> None:
    assert localdate(LATE, ZoneInfo("Europe/Paris")) == "February 12, 2020"
    assert localdate(LATE, "America/New_York", "fr") == "11 février 2020"


def test_template_dates_are_english_where_the_text_is(env: jinja2.Environment) -> None:
    """German has no catalog: its pages read "Published February 12, 2020", not a German date."""
    template = env.from_string("{{ d | localdate('Europe/Paris', lang) }}")
    assert template.render(d=LATE, lang="de") == "February 12, 2020"
    assert template.render(d=LATE, lang="fr") == "12 février 2020"


# --- mails -----------------------------------------------------------------------------------------


def phrases(msgid: Msgid, lang: str) -> set[str]:
    """The fixed words of a message in lang (placeholders and markup cut out), at least 4 letters."""
    ids = msgid if isinstance(msgid, tuple) else (msgid,)
    if lang == "en":
        texts: tuple[str, ...] = ids
    else:
        message = catalog(LOCALES / lang / "LC_MESSAGES" / "messages.po", lang).get(ids[0])
        assert message is not None
        texts = forms_of(message.string)
    return {p.strip(" :.,?") for t in texts for p in PLACEHOLDER.split(t) if len(p.strip(" :.,?")) >= 4}


def chrome(folder: str, lang: str, other: str) -> set[str]:
    """The phrases of the templates in folder written in lang and not also in the other language."""
    messages = [m for m, where in extracted().items() if any(w.startswith(folder) for w in where)]
    mine = set().union(*(phrases(m, lang) for m in messages))
    theirs = set().union(*(phrases(m, other) for m in messages))
    return mine - theirs


def found_in(found: set[str], text: str) -> list[str]:
    """The phrases that occur in text as whole words."""
    return sorted(p for p in found if re.search(rf"(?<!\w){re.escape(p)}(?!\w)", text))


def parts(template: MessageTemplate) -> Iterator[str]:
    message = message_from_bytes(template.personalise(READER), policy=policy.default)
    assert isinstance(message, EmailMessage)
    yield str(message["Subject"])
    for subtype in ("plain", "html"):
        body = message.get_body((subtype,))
        assert body is not None
        yield body.get_content()


def full_release(lang: str) -> Release:
    """The sample release with every optional part a mail can show."""
    return sample(
        lang=lang,
        contacts=(Contact("Jane Doe", "Press officer", "press@example.org"),),
        link="https://example.org/more",
        attachments=(Attachment("sheet.pdf", "x/sheet.pdf", "application/pdf", 1000, "0" * 64),),
    )


def every_mail(lang: str) -> dict[str, MessageTemplate]:
    renderer = MailRenderer(make_environment(TEMPLATES), SITE, SENDER)
    return {
        "bulletin": renderer.bulletin(full_release(lang), NOW),
        "confirmation": renderer.confirmation(lang, 168, NOW),
        "digest": renderer.digest([full_release(lang)], lang, NOW),
        "correction": renderer.correction(full_release(lang), "Une date était fausse.", NOW),
    }


@pytest.mark.parametrize(("lang", "other"), [("fr", "en"), ("en", "fr")])
def test_each_mail_speaks_one_language(lang: str, other: str) -> None:
    foreign = chrome("email/", other, lang)
    assert "Press contacts" in chrome("email/", "en", "fr")  # the check has something to find
    for kind, template in every_mail(lang).items():
        for text in parts(template):
            assert found_in(foreign, text) == [], f"{kind} in {lang} has {other} phrases"


def test_french_mails_have_french_chrome_and_dates() -> None:
    mails = {kind: "\n".join(parts(t)) for kind, t in every_mail("fr").items()}
    assert "Publié le 12 février 2020" in mails["bulletin"]
    assert "Contacts presse" in mails["bulletin"]
    assert "Téléchargements" in mails["bulletin"]
    assert "Se désabonner" in mails["bulletin"]
    assert "Confirmez votre abonnement à IMT press releases" in mails["confirmation"]
    assert "Ce lien est valable 168 heures." in mails["confirmation"]
    assert "IMT press releases : nouveau communiqué (1)" in mails["digest"]
    assert "12 février 2020" in mails["digest"]
    assert "Rectificatif : The Carnot Institutes" in mails["correction"]
    assert 'lang="fr"' in mails["bulletin"]


def test_a_language_without_a_catalog_gets_the_english_mail() -> None:
    german = {kind: list(parts(t)) for kind, t in every_mail("de").items()}
    english = {kind: list(parts(t)) for kind, t in every_mail("en").items()}
    for kind in german:
        subject, text, html = german[kind]
        assert (subject, text) == tuple(english[kind][:2]), kind
        assert html == english[kind][2].replace('lang="en"', 'lang="de"'), kind
    assert "Published February 12, 2020" in german["bulletin"][1]


# --- pages -----------------------------------------------------------------------------------------


@pytest.fixture
def pages() -> PageRenderer:
    return PageRenderer(make_environment(TEMPLATES), SITE)  # an English site


def web_chrome(lang: str, other: str) -> set[str]:
    return chrome("web/", lang, other)


def visible(html: str) -> str:
    """The page without its style sheet (CSS words are not chrome)."""
    return re.sub(r"<style>.*?</style>", "", html, flags=re.DOTALL)


def test_a_french_release_has_a_french_permalink_page(pages: PageRenderer) -> None:
    release = full_release("fr")
    release = replace(release, version=2, updated=datetime(2020, 3, 1, 12, tzinfo=UTC))
    html = visible(pages.announcement(release))
    assert '<html lang="fr">' in html
    for phrase in ("Tous les communiqués", "Contacts presse", "Téléchargements", "En savoir plus",
                   "Suivre par flux", "Aller au contenu", 'aria-label="Thèmes"'):  # fmt: skip
        assert phrase in html
    assert "12 février 2020" in html
    assert "Mis à jour le <time" in html
    assert found_in(web_chrome("en", "fr"), html) == []


def test_other_pages_stay_in_the_site_language(pages: PageRenderer) -> None:
    html = visible(pages.not_found())
    assert '<html lang="en">' in html
    assert "Page not found" in html
    assert found_in(web_chrome("fr", "en"), html) == []


def test_a_french_site_has_french_pages() -> None:
    site = Site(SITE.title, SITE.description, SITE.author, SITE.base_url, "fr-FR", SITE.timezone)
    pages = PageRenderer(make_environment(TEMPLATES), site)
    html = visible(pages.not_found())
    assert '<html lang="fr-FR">' in html
    assert "Page introuvable" in html
    assert found_in(web_chrome("en", "fr"), html) == []


def test_a_release_in_a_language_without_catalog_is_shown_in_english(pages: PageRenderer) -> None:
    html = pages.announcement(full_release("de"))
    assert '<html lang="de">' in html
    assert "All announcements" in html
    assert "February 12, 2020" in html

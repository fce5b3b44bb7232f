"""The one Jinja2 environment: sandboxed, autoescaping, strict, translated; shared by web pages and email."""

from __future__ import annotations

import functools
import gettext
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from io import BytesIO
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo

import jinja2
from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import PoFileError, read_po
from babel.support import Translations
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from service.errors import ConfigError

SOURCE_LANGUAGE = "en"  # the msgids are the English text: English needs no catalog
LOCALES = "locales"  # templates/locales/<lang>/LC_MESSAGES/messages.po
DOMAIN = "messages"
# The templates that ship with the code, beside the `service` package.
SHIPPED_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"

# Markup formats are escaped; plain-text email bodies are not (they would show "&amp;").
# Anything else, including templates built from strings, is escaped: the safe default.
_ESCAPED = ("html", "htm", "xml", "html.j2", "xml.j2")
_UNESCAPED = ("txt", "txt.j2", "text.j2", "subject.j2")

_UNTRANSLATED = gettext.NullTranslations()  # returns the English source text


def _require_aware(value: datetime) -> datetime:
    """Return value unchanged, refusing naive datetimes (their instant is ambiguous)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: expected a time-zone aware datetime")
    return value


def isodate(value: datetime) -> str:
    """Format an aware datetime as an RFC 3339 timestamp in UTC, e.g. 2020-02-12T09:30:00Z."""
    utc = _require_aware(value).astimezone(UTC)
    return utc.isoformat().replace("+00:00", "Z")


def primary_subtag(lang: str) -> str:
    """The language part of a tag, lowercased: "fr-FR" -> "fr"."""
    return lang.replace("_", "-").split("-")[0].lower()


@functools.lru_cache(maxsize=128)
def _locale(lang: str) -> Locale:
    # The whole tag first ("en-GB" writes "12 February 2020", "en" "February 12, 2020"), then its
    # language, then English: a tag Babel does not know must not break a page or a mail.
    for tag in (lang.replace("_", "-"), primary_subtag(lang)):
        try:
            return Locale.parse(tag, sep="-")
        except (ValueError, TypeError, UnknownLocaleError):
            continue
    return Locale.parse(SOURCE_LANGUAGE)


def localdate(value: datetime, zone: tzinfo | str, lang: str = "en") -> str:
    """Format an aware datetime as a long date in zone, per lang: "February 12, 2020", "12 février 2020"."""
    tz = ZoneInfo(zone) if isinstance(zone, str) else zone
    local = _require_aware(value).astimezone(tz)
    # Babel's CLDR data, never strftime("%B"), whose output follows the host's LANG.
    return format_date(local.date(), format="long", locale=_locale(lang))


# --- translation catalogs -------------------------------------------------------------------------


def _compile(po: Path, lang: str) -> gettext.NullTranslations:
    """Read one .po file and compile it in memory: no .mo file to build, ship or keep in step."""
    try:
        with po.open("rb") as fp:
            catalog = read_po(fp, locale=lang, domain=DOMAIN, abort_invalid=True)
    except PoFileError as exc:  # its message ends "on <line number>": say it the usual way
        reason = str(exc).removesuffix(f" on {exc.lineno}")
        raise ConfigError("templates_dir", f"translation catalog {po}, line {exc.lineno}: {reason}") from None
    except (OSError, UnknownLocaleError, ValueError) as exc:
        raise ConfigError("templates_dir", f"translation catalog {po}: {exc}") from None
    # Fuzzy entries are guesses by `pybabel update`, not translations; an entry with an empty
    # form would print nothing. Either way the English source text is the better output.
    for message in list(catalog)[1:]:
        forms = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy or not all(forms):
            del catalog[message.id]
    # A placeholder misspelt by a translator would fail mid-send: refuse the catalog at startup.
    problems = [f"{message.id!r}: {errors[0]}" for message, errors in catalog.check()]
    if problems:
        raise ConfigError("templates_dir", f"translation catalog {po}: {'; '.join(problems)}")
    buffer = BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


@functools.cache
def _catalogs(folder: Path) -> Mapping[str, gettext.NullTranslations]:
    return MappingProxyType(
        {
            po.parents[1].name: _compile(po, po.parents[1].name)
            for po in sorted(folder.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))
        }
    )


def catalogs(templates_dir: Path) -> Mapping[str, gettext.NullTranslations]:
    """The translations of the templates in templates_dir, by language; read once per folder."""
    return _catalogs((templates_dir / LOCALES).resolve())


def catalog_languages(templates_dir: Path) -> tuple[str, ...]:
    """English, then every language the templates in templates_dir have a catalog for."""
    # Only looks for the files (make_environment reads them): cheap, and cannot fail at import.
    found = {po.parents[1].name for po in (templates_dir / LOCALES).glob(f"*/LC_MESSAGES/{DOMAIN}.po")}
    return (SOURCE_LANGUAGE, *sorted(found - {SOURCE_LANGUAGE}))


def language_name(lang: str) -> str:
    """A language's name in that language, for a list of choices: "fr" -> "Français"."""
    try:
        name = Locale.parse(lang, sep="-").get_display_name() or lang
    except (ValueError, TypeError, UnknownLocaleError):
        return lang
    return name[:1].upper() + name[1:]  # CLDR writes most names in lowercase ("français")


# The languages mails can be written in, for the subscription form, API and command line. They
# come from the shipped templates because those callers validate before any settings are read.
LANGUAGES = catalog_languages(SHIPPED_TEMPLATES)


def _install_translations(
    env: jinja2.Environment, translated: Mapping[str, gettext.NullTranslations]
) -> None:
    """Give templates _(), gettext() and ngettext() in the language of the render's `lang`."""

    def pick(context: Context) -> gettext.NullTranslations:
        lang = context.get("lang")
        return translated.get(primary_subtag(lang), _UNTRANSLATED) if isinstance(lang, str) else _UNTRANSLATED

    @jinja2.pass_context
    def gettext_(context: Context, message: str) -> str:
        return pick(context).gettext(message)

    @jinja2.pass_context
    def ngettext_(context: Context, singular: str, plural: str, n: int) -> str:
        return pick(context).ngettext(singular, plural, n)

    def date_filter(value: datetime, zone: tzinfo | str, lang: str = SOURCE_LANGUAGE) -> str:
        # The date is part of the text around it: in a language the templates are not translated
        # into, the text is English, so the date is too ("Published February 12, 2020").
        known = primary_subtag(lang) == SOURCE_LANGUAGE or primary_subtag(lang) in translated
        return localdate(value, zone, lang if known else SOURCE_LANGUAGE)

    # Newstyle: _() escapes its %(name)s values in HTML templates and fails on a missing one.
    env.install_gettext_callables(gettext_, ngettext_, newstyle=True)  # type: ignore[attr-defined]
    env.filters["localdate"] = date_filter


def make_environment(templates_dir: Path) -> jinja2.Environment:
    """Build the sandboxed, translated template environment that loads from templates_dir."""
    # Immutable sandbox: templates may read attributes and call safe methods, but can neither
    # reach Python internals (__class__, __globals__ ...) nor mutate the data they are given.
    env = ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(templates_dir),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=_ESCAPED,
            disabled_extensions=_UNESCAPED,
            default_for_string=True,
            default=True,
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # Templates ship with the code: never stat them per render.
        auto_reload=False,
        extensions=["jinja2.ext.i18n"],
    )
    # {% trans %} blocks are extracted with the same whitespace rules (babel.cfg: trimmed), so a
    # block's msgid does not depend on how the template is indented.
    env.policies["ext.i18n.trimmed"] = True
    env.filters["isodate"] = isodate
    # Read the catalogs now: a broken .po stops the service at start, not in the middle of a send.
    _install_translations(env, catalogs(templates_dir))
    # Only the translation functions are global: templates see only what a renderer passes them,
    # never settings, secrets or the process environment.
    return env

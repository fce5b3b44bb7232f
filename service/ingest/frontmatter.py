"""YAML front matter: split it from the body and validate every field, with file line numbers."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from service.addresses import InvalidAddress, normalise_address
from service.errors import AnnouncementError
from service.ingest.options import IngestOptions
from service.ingest.sanitize import find_illegal
from service.models import Contact

FIELDS = (
    "title",
    "date",
    "id",
    "summary",
    "topics",
    "author",
    "lang",
    "publish_at",
    "attachments",
    "draft",
    "correction",
    "contacts",
    "doi",
    "link",
    "translation_of",
)
_DELIMITER = re.compile(r"^(---|\.\.\.)[ \t]*$")
RELEASE_ID = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,126}[a-z0-9])?$")  # also what URLs may name
_TOPIC = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$")
_LANG = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$")
_DOI = re.compile(r"^10\.\d{4,9}/[^\s\x00-\x1f\x7f]{1,200}$")
_PHONE = re.compile(r"^\+?[0-9][0-9 ().\-/]{3,30}$")
_CONTACT_KEYS = ("name", "role", "email", "phone")
_MAX_CONTACTS = 10
_MAX_TITLE = 300
_MAX_SUMMARY = 2000


@dataclass(frozen=True, slots=True)
class Metadata:
    """Validated front matter fields; None means "not given"."""

    title: str
    date: datetime
    id: str | None = None
    summary: str | None = None
    topics: tuple[str, ...] = ()
    author: str | None = None
    lang: str | None = None
    publish_at: datetime | None = None
    attachments: tuple[str, ...] = ()
    draft: bool = False
    correction: str | None = None
    contacts: tuple[Contact, ...] = ()
    doi: str | None = None
    link: str | None = None
    translation_of: str | None = None
    attachments_line: int | None = None  # where to point when an attachment file is missing


@dataclass(frozen=True, slots=True)
class Document:
    """A release file split into its front matter mapping and its body."""

    data: dict[str, Any]
    lines: dict[str, int]  # key -> 1-based line in the file
    body: str
    body_line: int  # 1-based line where the body starts


_BOOL_TAG = "tag:yaml.org,2002:bool"


_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_MAX_DEPTH = 100


class _Refusal(yaml.MarkedYAMLError):
    """A well-formed document we refuse anyway (its message needs no "invalid YAML" prefix)."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1 surprises: no aliases (YAML bombs), no deep nesting, no duplicate
    keys; only true/false are booleans and only plain decimals are numbers.

    `lang: no` stays the Norwegian language tag, `on:` stays a key named "on", `phone: 0142345670`
    stays those digits (not an octal number) and `title: 3.10` stays "3.10".
    """

    yaml_implicit_resolvers = {  # noqa: RUF012 - PyYAML's own class-level registry
        first: [(tag, regex) for tag, regex in resolvers if tag not in (_BOOL_TAG, _INT_TAG, _FLOAT_TAG)]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if self.check_event(yaml.AliasEvent):
            raise yaml.MarkedYAMLError(
                problem="aliases (*name) are not allowed", problem_mark=event.start_mark
            )
        if self._depth >= _MAX_DEPTH:  # PyYAML recurses: 10,000 '[' would be a RecursionError
            raise yaml.MarkedYAMLError(
                problem=f"nested more than {_MAX_DEPTH} levels deep", problem_mark=event.start_mark
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # PyYAML keeps the last of two equal keys silently; a release must say one thing.
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise _Refusal(problem=f"duplicate key {key!r}", problem_mark=key_node.start_mark)
            if isinstance(key, Hashable):
                seen.add(key)
        return super().construct_mapping(node, deep)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # PyYAML lets ValueError escape for values like 2020-02-30; give it the node's position.
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"invalid value {node.value!r}: {exc}", node.start_mark
            ) from None


_StrictLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_StrictLoader.add_implicit_resolver(_INT_TAG, re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789"))


def _has_control(text: str) -> bool:
    # Control characters, and what no feed or mail may carry (lone surrogates, U+FFFE, ...).
    return find_illegal(text) is not None or any(unicodedata.category(c) == "Cc" for c in text)


def split(text: str, source: str) -> Document:
    """Separate the `---` delimited YAML block from the body and parse it."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise AnnouncementError(
            source,
            "missing front matter",
            line=1,
            hint="start the file with a '---' line, then 'title:' and 'date:' lines, then '---'",
        )
    end = next((i for i in range(1, len(lines)) if _DELIMITER.match(lines[i].rstrip("\r\n"))), None)
    if end is None:
        raise AnnouncementError(
            source, "front matter is not closed", line=1, hint="add a '---' line after it"
        )
    data, key_lines = _load_yaml("".join(lines[1:end]), source, first_line=2)
    return Document(data=data, lines=key_lines, body="".join(lines[end + 1 :]), body_line=end + 2)


def _load_yaml(text: str, source: str, first_line: int) -> tuple[dict[str, Any], dict[str, int]]:
    try:
        loader = _StrictLoader(text)
    except yaml.reader.ReaderError as exc:
        line = first_line + text[: exc.position].count("\n")
        bad = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise AnnouncementError(source, f"contains the control character U+{bad:04X}", line=line) from None
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
        if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
            raise AnnouncementError(
                source,
                "front matter must be a mapping of keys to values",
                line=first_line,
                hint="write one 'key: value' per line",
            )
        # Under the text validate() looks it up by: str() of what the key became ("None" for "~").
        lines = {str(loader.construct_object(key)): first_line + key.start_mark.line for key, _ in node.value}
    except _Refusal as exc:
        where = first_line + exc.problem_mark.line if exc.problem_mark is not None else None
        raise AnnouncementError(source, str(exc.problem), line=where) from None
    except yaml.MarkedYAMLError as exc:
        reason, mark = _where(exc)
        raise AnnouncementError(
            source, f"invalid YAML: {reason}", line=first_line + mark.line if mark is not None else None
        ) from None
    except yaml.YAMLError as exc:
        raise AnnouncementError(source, f"invalid YAML: {exc}", line=first_line) from None
    finally:
        loader.dispose()
    return data, lines


def _where(exc: yaml.MarkedYAMLError) -> tuple[str, Any]:
    # An unclosed quote or bracket is found at the end of the block: point at where it was opened.
    problem, context = exc.problem or "", exc.context or ""
    opened, found = exc.context_mark, exc.problem_mark
    unclosed = isinstance(exc, yaml.scanner.ScannerError | yaml.parser.ParserError)
    if unclosed and context and opened is not None and found is not None and opened.line != found.line:
        return f"{problem} {context}".strip(), opened
    return problem or context or "invalid YAML", exc.problem_mark or exc.context_mark


def validate(doc: Document, source: str, options: IngestOptions) -> Metadata:
    """Check every field and convert it to its type; the first problem found is raised."""
    check = _Checker(doc, source, options)
    for key in doc.data:
        if key not in FIELDS:
            close = [f for f in FIELDS if f[:3] == str(key)[:3]]
            hint = f"did you mean {close[0]!r}?" if close else "known keys: " + ", ".join(FIELDS)
            raise check.error(str(key), f"unknown key {key!r}", hint)
    return Metadata(
        title=check.text("title", required=True, limit=_MAX_TITLE) or "",
        date=check.moment("date", required=True) or datetime.min,
        id=check.pattern("id", RELEASE_ID, "lowercase letters, digits, '-' and '_', e.g. 2020-02-carnot"),
        summary=check.text("summary", limit=_MAX_SUMMARY, multiline=True),
        topics=check.topics(),
        author=check.text("author", limit=200),
        lang=check.pattern("lang", _LANG, "a language tag such as en or fr-FR"),
        publish_at=check.moment("publish_at"),
        attachments=check.attachments(),
        draft=check.flag("draft"),
        correction=check.text("correction", limit=_MAX_SUMMARY, multiline=True),
        contacts=check.contacts(),
        doi=check.doi(),
        link=check.link(),
        translation_of=check.pattern(
            "translation_of", RELEASE_ID, "the id of the release this one translates"
        ),
        attachments_line=doc.lines.get("attachments"),
    )


class _Checker:
    """Field-by-field validation that knows each key's line for error messages."""

    def __init__(self, doc: Document, source: str, options: IngestOptions) -> None:
        self._doc = doc
        self._source = source
        self._options = options

    def error(self, key: str, reason: str, hint: str = "") -> AnnouncementError:
        """An error pointing at the line of `key` (or the start of the front matter)."""
        return AnnouncementError(self._source, reason, line=self._doc.lines.get(key, 1), hint=hint)

    def _get(self, key: str, required: bool) -> Any:
        value = self._doc.data.get(key)
        if value is None and required:
            raise self.error(key, f"missing required key {key!r}", f"add a '{key}:' line to the front matter")
        return value

    def text(self, key: str, *, required: bool = False, limit: int, multiline: bool = False) -> str | None:
        """A non-empty string without control characters."""
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise self.error(key, f"{key!r} must be text")
        text = unicodedata.normalize("NFC", str(value)).strip()
        if not text:
            if required:
                raise self.error(key, f"{key!r} is empty")
            return None
        if not multiline and len(text.splitlines()) > 1:
            raise self.error(key, f"{key!r} must be a single line")
        bad = find_illegal(text) or next(
            (c for c in text if c != "\n" and unicodedata.category(c) == "Cc"), None
        )
        if bad is not None:
            raise self.error(key, f"{key!r} contains the control character U+{ord(bad):04X}")
        if len(text) > limit:
            raise self.error(key, f"{key!r} is {len(text)} characters long; the limit is {limit}")
        return text

    def moment(self, key: str, *, required: bool = False) -> datetime | None:
        """A time-zone aware datetime; a bare date means midnight in the configured zone."""
        value = self._get(key, required)
        if value is None:
            return None
        if isinstance(value, str):
            value = self._parse_moment(key, value.strip())
        if isinstance(value, datetime):
            if value.tzinfo is None or value.utcoffset() is None:
                raise self.error(
                    key,
                    f"{key!r} has a time but no time zone",
                    "add an offset such as +01:00 or Z, or give a date alone",
                )
        elif isinstance(value, date):
            value = datetime.combine(value, time(0), tzinfo=self._options.timezone)
        else:
            raise self.error(key, f"{key!r} must be a date such as 2020-02-12 or 2020-02-12T09:00:00+01:00")
        if not 1970 <= value.year <= 2100:
            raise self.error(key, f"{key!r} year {value.year} is outside 1970-2100")
        return value

    def _parse_moment(self, key: str, text: str) -> date | datetime:
        # "2026-03-29T10:00 Europe/Paris": a local time in a named zone, checked against its DST changes.
        local, _, zone_name = text.rpartition(" ")
        if not zone_name[:1].isalpha():  # no zone: "2020-02-12 10:00:00" is ISO 8601 with a space
            local, zone_name = text, ""
        try:
            value = date.fromisoformat(local) if len(local) == 10 else datetime.fromisoformat(local)
        except ValueError:
            raise self.error(
                key,
                f"{key!r} is not a valid date: {text[:40]!r}",
                "use ISO 8601, e.g. 2020-02-12 or 2020-02-12T09:00:00+01:00 or 2020-02-12T09:00 Europe/Paris",
            ) from None
        if not zone_name:
            return value
        if not isinstance(value, datetime) or value.tzinfo is not None:
            raise self.error(
                key, f"{key!r} gives a zone name after a date alone or after an offset: {text[:60]!r}"
            )
        return self._in_zone(key, value, zone_name.strip())

    def _in_zone(self, key: str, local: datetime, zone_name: str) -> datetime:
        try:
            zone = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise self.error(
                key,
                f"{key!r} names an unknown time zone {zone_name[:40]!r}",
                "use an IANA name such as Europe/Paris",
            ) from None
        # A wall-clock time a DST change skips (or repeats) has no single meaning: refuse, never guess.
        moments = {local.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1)}
        exists = any(m.astimezone(zone).replace(tzinfo=None) == local for m in moments)
        written = f"{local.isoformat(timespec='minutes')} {zone_name}"
        if not exists:
            raise self.error(
                key,
                f"{key!r} {written} does not exist: the clocks skip that hour (daylight saving time)",
                "choose a time outside the change, or give an offset such as +01:00",
            )
        if len(moments) > 1:
            first, second = (local.replace(tzinfo=zone, fold=fold).isoformat()[-6:] for fold in (0, 1))
            raise self.error(
                key,
                f"{key!r} {written} happens twice: the clocks go back that hour (daylight saving time)",
                f"give an offset instead: {first} for the first time, {second} for the second",
            )
        return local.replace(tzinfo=zone)

    def pattern(self, key: str, regex: re.Pattern[str], what: str) -> str | None:
        """A short identifier matching `regex`."""
        value = self._get(key, False)
        if value is None:
            return None
        if isinstance(value, int | date) and not isinstance(value, bool | datetime):
            value = value.isoformat() if isinstance(value, date) else str(value)  # id: 2020-02-12
        if not isinstance(value, str) or not regex.fullmatch(value):
            raise self.error(key, f"{key!r} must be {what}; got {str(value)[:60]!r}")
        return value

    def topics(self) -> tuple[str, ...]:
        """A list of topic slugs, lowercased, duplicates removed, order kept."""
        value = self._get("topics", False)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise self.error("topics", "'topics' must be a list of words", "e.g. topics: [research, awards]")
        topics = tuple(dict.fromkeys(t.strip().lower() for t in value))
        for topic in topics:
            if not _TOPIC.fullmatch(topic):
                raise self.error(
                    "topics",
                    f"topic {topic[:60]!r} is not a valid topic",
                    "use lowercase letters, digits and '-', e.g. open-science",
                )
        return topics

    def attachments(self) -> tuple[str, ...]:
        """File names of attachments, next to the release file (no folders, no '..')."""
        value = self._get("attachments", False)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
            raise self.error("attachments", "'attachments' must be a list of file names")
        for name in value:
            path = PurePosixPath(name)
            if path.is_absolute() or ".." in path.parts or len(path.parts) != 1 or "\\" in name:
                raise self.error(
                    "attachments",
                    f"attachment {name[:80]!r} must be a plain file name",
                    "put the file in the same folder as the release",
                )
        return tuple(dict.fromkeys(value))

    def contacts(self) -> tuple[Contact, ...]:
        """Press contacts: a list of mappings with a name and any of role, email and phone."""
        value = self._get("contacts", False)
        if value is None:
            return ()
        example = "e.g. contacts: [{name: Jane Doe, email: press@example.org, phone: +33 1 23 45 67 89}]"
        if not isinstance(value, list) or not all(isinstance(c, dict) for c in value):
            raise self.error("contacts", "'contacts' must be a list of name/email/phone mappings", example)
        if len(value) > _MAX_CONTACTS:
            raise self.error(
                "contacts", f"'contacts' lists {len(value)} people; the limit is {_MAX_CONTACTS}"
            )
        return tuple(self._contact(item, example) for item in value)

    def _contact(self, item: dict[Any, Any], example: str) -> Contact:
        unknown = [str(k) for k in item if k not in _CONTACT_KEYS]
        if unknown:
            raise self.error(
                "contacts", f"unknown contact key {unknown[0]!r}", "known: " + ", ".join(_CONTACT_KEYS)
            )
        fields: dict[str, str | None] = {}
        for key in _CONTACT_KEYS:
            raw = item.get(key)
            text = None if raw is None else unicodedata.normalize("NFC", str(raw)).strip()
            if text and (len(text) > 200 or _has_control(text)):
                raise self.error(
                    "contacts", f"contact {key} {text[:60]!r} is too long or has control characters"
                )
            fields[key] = text or None
        if fields["name"] is None:
            raise self.error("contacts", "every contact needs a 'name'", example)
        if fields["email"] is not None:
            try:
                fields["email"] = normalise_address(fields["email"])
            except InvalidAddress as exc:
                raise self.error(
                    "contacts", f"contact email {fields['email'][:80]!r} is not valid: {exc}"
                ) from None
        if fields["phone"] is not None and not _PHONE.fullmatch(fields["phone"]):
            raise self.error(
                "contacts",
                f"contact phone {fields['phone'][:40]!r} is not a phone number",
                "e.g. +33 1 23 45 67 89",
            )
        return Contact(name=fields["name"], role=fields["role"], email=fields["email"], phone=fields["phone"])

    def doi(self) -> str | None:
        """A DOI such as 10.1234/abcd (a https://doi.org/ prefix is removed)."""
        value = self._get("doi", False)
        if value is None:
            return None
        text = str(value).strip()
        for prefix in (
            "https://doi.org/",
            "http://doi.org/",
            "http://dx.doi.org/",
            "https://dx.doi.org/",
            "doi:",
        ):
            text = text.removeprefix(prefix)
        if not _DOI.fullmatch(text) or _has_control(text):
            raise self.error("doi", f"'doi' must be a DOI such as 10.1234/abcd; got {str(value)[:60]!r}")
        return text

    def link(self) -> str | None:
        """An absolute http(s) URL."""
        value = self._get("link", False)
        if value is None:
            return None
        text = str(value).strip()
        parts = urlsplit(text) if isinstance(value, str) else None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.netloc
            or len(text) > 2000
            or any(c.isspace() for c in text)
            or _has_control(text)
        ):
            raise self.error(
                "link",
                f"'link' must be an http(s) address; got {text[:60]!r}",
                "e.g. https://example.org/paper",
            )
        return text

    def flag(self, key: str) -> bool:
        """A true/false value."""
        value = self._get(key, False)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self.error(key, f"{key!r} must be true or false")
        return value

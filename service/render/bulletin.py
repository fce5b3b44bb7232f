"""Mail rendering: each message is rendered and serialised once, then personalised as bytes.

Building an EmailMessage per subscriber costs milliseconds (PERFORMANCE.md); replacing a few ASCII
placeholders in the serialised bytes costs microseconds and gives the same message. Placeholders
sit where email.generator can neither fold nor encode them, and bodies are 8bit, so the bytes
after substitution are exactly what rendering each message separately would produce.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any

import css_inline
import jinja2
from markupsafe import Markup

from service.ingest.sanitize import first_paragraph_text
from service.models import Attachment, Release
from service.render.plaintext import html_to_plain
from service.render.site import Site

SMTP_POLICY = policy.SMTP.clone(max_line_length=998)
_MAX_LINE = 900  # leaves room for a substituted URL under SMTP's 998-octet line limit

# Placeholders must survive header parsing, folding, Jinja2 escaping and CSS inlining unchanged:
# plain ASCII atoms, shaped like what they stand for where a header parser insists.
TO = b"zz-to@zz-to.invalid"
MESSAGE_ID = b"zz-message-id"  # the local part: "<zz-message-id@domain>"
IN_REPLY_TO = b"zz-in-reply-to"
UNSUBSCRIBE_URL = b"ZZUNSUBSCRIBEURLZZ"
UNSUBSCRIBE_MAILTO = b"ZZUNSUBSCRIBEMAILTOZZ"
PREFERENCES_URL = b"ZZPREFERENCESURLZZ"
CONFIRM_URL = b"ZZCONFIRMURLZZ"
_FIELDS = {
    TO: "to",
    MESSAGE_ID: "message_id",
    UNSUBSCRIBE_URL: "unsubscribe_url",
    UNSUBSCRIBE_MAILTO: "unsubscribe_mailto",
    PREFERENCES_URL: "preferences_url",
    CONFIRM_URL: "confirm_url",
    IN_REPLY_TO: "in_reply_to",
}  # placeholder -> the Personal field that replaces it
_PLACEHOLDER = re.compile(b"(" + b"|".join(re.escape(p) for p in _FIELDS) + b")")


@dataclass(frozen=True, slots=True)
class Sender:
    """Who our mail comes from."""

    address: str
    name: str
    domain: str  # right-hand side of Message-IDs, and of the List-Id

    @property
    def list_id(self) -> str:
        """RFC 2919 list identifier."""
        return f"announcements.{self.domain}"


@dataclass(frozen=True, slots=True)
class Personal:
    """What differs between two copies of one message."""

    to: str
    message_id: str  # the part left of "@" (the sender's domain is the right-hand side)
    unsubscribe_url: str = ""
    unsubscribe_mailto: str = ""
    preferences_url: str = ""
    confirm_url: str = ""
    in_reply_to: str = ""  # the left part of the Message-ID being answered


@dataclass(frozen=True, slots=True)
class MessageTemplate:
    """A serialised message with placeholders where each recipient's values go."""

    data: bytes
    subject: str
    # The data cut once at its placeholders: the texts between them, and the Personal field that
    # goes between each two texts.
    _texts: tuple[bytes, ...] = field(init=False, repr=False, compare=False)
    _fields: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pieces = _PLACEHOLDER.split(self.data)  # the capturing group keeps the placeholders
        object.__setattr__(self, "_texts", tuple(pieces[0::2]))
        object.__setattr__(self, "_fields", tuple(_FIELDS[p] for p in pieces[1::2]))

    def personalise(self, who: Personal) -> bytes:
        """The message for one recipient."""
        # One join of the texts and the values: a replace() per placeholder copied the whole
        # message each time, and a fan-out personalises every message it sends.
        encoded = {name: getattr(who, name).encode("ascii") for name in set(self._fields)}
        pieces = [b""] * (2 * len(self._fields) + 1)
        pieces[0::2] = self._texts
        pieces[1::2] = [encoded[name] for name in self._fields]
        return b"".join(pieces)


def _wrap(text: str) -> str:
    # SMTP lines are at most 998 octets; break over-long lines at a space (whitespace either way).
    out: list[str] = []
    for line in text.split("\n"):
        while (
            len(line.encode()) > _MAX_LINE
            and (cut := line.rfind(" ", 0, _MAX_LINE // 2 + _MAX_LINE // 4)) > 0
        ):
            out.append(line[:cut])
            line = line[cut + 1 :]
        out.append(line)
    return "\n".join(out)


_INLINER = css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False)
_BLANK_LINES = re.compile(r"\n{3,}")
# C0 and C1 controls: ingest refuses them in titles, but a Subject must be one clean line whatever
# reaches the renderer (str.split() already breaks at CR, LF, U+2028 ... but keeps NUL and others).
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def fits_a_header(value: str) -> bool:
    """True for a value `MessageTemplate.personalise` can put into a header as it is (the To:
    address): ASCII, with no control character that would end the line or the header."""
    return value.isascii() and _CONTROLS.search(value) is None


class MailRenderer:
    """Renders every kind of mail we send from the templates in templates/email/."""

    def __init__(self, env: jinja2.Environment, site: Site, sender: Sender) -> None:
        self._env = env
        self._site = site
        self._sender = sender

    def _render(self, name: str, lang: str, context: Mapping[str, Any]) -> tuple[str, str, str]:
        values = {
            "site": self._site,
            "lang": lang,
            "unsubscribe_url": UNSUBSCRIBE_URL.decode(),
            "preferences_url": PREFERENCES_URL.decode(),
            "confirm_url": CONFIRM_URL.decode(),
            **context,
        }
        subject = self._env.get_template(f"email/{name}.subject.j2").render(values)
        subject = " ".join(_CONTROLS.sub(" ", subject).split())
        text = self._env.get_template(f"email/{name}.txt.j2").render(values)
        html = _INLINER.inline(self._env.get_template(f"email/{name}.html.j2").render(values))
        return subject, _BLANK_LINES.sub("\n\n", text), html

    def _message(
        self,
        subject: str,
        text: str,
        html: str,
        now: datetime,
        *,
        list_mail: bool,
        reply: bool = False,
        files: Sequence[tuple[Attachment, bytes]] = (),
    ) -> MessageTemplate:
        msg = EmailMessage(policy=SMTP_POLICY)
        msg["From"] = formataddr((self._sender.name, self._sender.address))
        msg["To"] = TO.decode()
        msg["Subject"] = subject
        msg["Date"] = format_datetime(now)
        msg["Message-ID"] = f"<{MESSAGE_ID.decode()}@{self._sender.domain}>"
        if reply:
            msg["In-Reply-To"] = f"<{IN_REPLY_TO.decode()}@{self._sender.domain}>"
            msg["References"] = f"<{IN_REPLY_TO.decode()}@{self._sender.domain}>"
        msg["Auto-Submitted"] = "auto-generated"  # no vacation replies to a press office robot
        if list_mail:
            msg["List-Id"] = f"{self._site.title} <{self._sender.list_id}>"
            msg["List-Unsubscribe"] = f"<{UNSUBSCRIBE_URL.decode()}>, <{UNSUBSCRIBE_MAILTO.decode()}>"
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg.set_content(_wrap(text), subtype="plain", charset="utf-8", cte="8bit")
        msg.add_alternative(_wrap(html), subtype="html", charset="utf-8", cte="8bit")
        # A boundary from the content, not random: the same message serialises to the same bytes.
        boundary = hashlib.sha256((text + html).encode()).hexdigest()[:32]
        msg.set_boundary("=_" + boundary)
        if files:
            msg.make_mixed()
            for item, data in files:
                # Built under the default 78-column policy: SMTP_POLICY's 998 would make base64 lines
                # of 996 characters, where RFC 2045 allows 76 (and spam filters count it against us).
                part = EmailMessage(policy=policy.SMTP)
                maintype, _, subtype = item.content_type.partition("/")
                part.set_content(
                    data, maintype=maintype, subtype=subtype or "octet-stream", filename=item.name
                )
                msg.attach(part)
            msg.set_boundary("=_m" + boundary)
        return MessageTemplate(msg.as_bytes(policy=SMTP_POLICY), subject)

    def bulletin(
        self, release: Release, now: datetime, files: Sequence[tuple[Attachment, bytes]] = ()
    ) -> MessageTemplate:
        """A single release, in the release's language; `files` are attached (the others only linked)."""
        lang = release.announcement.lang
        subject, text, html = self._render("bulletin", lang, self._release_context(release))
        return self._message(subject, text, html, now, list_mail=True, files=files)

    def correction(self, release: Release, note: str, now: datetime) -> MessageTemplate:
        """The corrected release with its correction note, threaded under the bulletin each recipient got."""
        lang = release.announcement.lang
        context = {**self._release_context(release), "correction": note}
        subject, text, html = self._render("correction", lang, context)
        return self._message(subject, text, html, now, list_mail=True, reply=True)

    def digest(self, releases: Sequence[Release], lang: str, now: datetime) -> MessageTemplate:
        """Several releases in one mail."""
        context = {"releases": [self._release_context(r) for r in releases], "count": len(releases)}
        subject, text, html = self._render("digest", lang, context)
        return self._message(subject, text, html, now, list_mail=True)

    def confirmation(self, lang: str, hours: int, now: datetime) -> MessageTemplate:
        """The double opt-in mail with its confirmation link."""
        subject, text, html = self._render("confirm", lang, {"hours": hours})
        return self._message(subject, text, html, now, list_mail=False)

    def _release_context(self, release: Release) -> dict[str, Any]:
        ann = release.announcement
        return {
            "release": release,
            "announcement": ann,
            "url": self._site.url(Site.permalink_path(ann.id)),
            "body": Markup(ann.body_html),  # sanitised at ingest
            "body_text": html_to_plain(ann.body_html),
            # A summary taken from the first paragraph (after a dateline, in a plain-text release)
            # would repeat it: show only one written apart.
            "show_summary": bool(ann.summary)
            and ann.summary.rstrip("…") not in first_paragraph_text(ann.body_html, limit=10**6),
            "attachments": [
                (a, self._site.url(Site.attachment_path(ann.id, a.name))) for a in ann.attachments
            ],
        }

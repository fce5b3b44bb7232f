"""No header injection: hostile addresses, titles, names and tokens never add or split a mail header.

Every path that puts outside data into a message header is driven with line breaks and controls
(CR LF, bare CR, bare LF, NUL, U+2028, U+2029, U+0085, VT, FF), and each message the real SMTP
server receives is parsed back (BytesParser, policy.default) and compared with the exact list of
headers it must have. The addresses: the form, the API and every other door (normalise_address).
The titles: a release file (refused at ingest, or flattened) and, below the ingest checks, the
renderer itself. The tokens: List-Unsubscribe and the links. The names: site_title and
mail_from_name, refused at start.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default

import httpx
import pytest
from pydantic import ValidationError

from service import jobs
from service.addresses import InvalidAddress, normalise_address
from service.config import Settings
from service.models import Consent, DeliveryKind, SubscriberState
from service.runtime import Components, make_app
from service.store.ledger import Claimed
from service.store.subscribers import Preferences
from service.tokens import Purpose
from tests.conftest import RECENT, START, Inbox, publish
from tests.delivery.smtpd import SmtpServer

BREAKS = ["\r\n", "\r", "\n", "\x00", "\u2028", "\u2029", "\x85", "\x0b", "\x0c"]
BREAK_IDS = ["crlf", "cr", "lf", "nul", "u2028", "u2029", "u0085", "vt", "ff"]
INJECTED = "Bcc: evil@example.net"
CONFIRMATION_HEADERS = [
    "From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "MIME-Version", "Content-Type",
]  # fmt: skip
LIST_HEADERS = [
    "From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "List-Id", "List-Unsubscribe",
    "List-Unsubscribe-Post", "MIME-Version", "Content-Type",
]  # fmt: skip
TOKEN = r"[A-Za-z0-9_.-]+"


def parse(data: bytes) -> EmailMessage:
    message = BytesParser(policy=default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def assert_clean_headers(message: EmailMessage, expected: list[str]) -> None:
    """Exactly these headers, in this order (no Bcc: of anyone's making), each one line without controls."""
    assert message.keys() == expected
    assert not message.defects
    for name, value in message.items():
        raw = str(value)
        assert not [c for c in raw if unicodedata.category(c) in ("Cc", "Zl", "Zp")], (name, raw)


@pytest.fixture
async def web(mail: Components) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app(mail))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def hostile_addresses(c: str) -> list[str]:
    return [
        f"jane@example.org{c}{INJECTED}",
        f"jane@example.org{c}",
        f"{c}jane@example.org",
        f"ja{c}ne@example.org",
        f"jane@exa{c}mple.org",
        f'"jane{c}{INJECTED}"@example.org',
        f"Jane <jane@example.org>{c}{INJECTED}",
    ]


# --- addresses -------------------------------------------------------------------------------------


@pytest.mark.parametrize("c", BREAKS, ids=BREAK_IDS)
def test_no_address_door_lets_a_line_break_or_control_through(c: str) -> None:
    """normalise_address is the one door of every address (form, API, CLI, CSV import, contacts)."""
    for text in hostile_addresses(c):
        try:
            address = normalise_address(text)
        except InvalidAddress:
            continue
        # Only surrounding whitespace may be dropped (a pasted trailing newline); what is left is plain.
        assert address == "jane@example.org", (text, address)


@pytest.mark.parametrize("c", BREAKS, ids=BREAK_IDS)
async def test_hostile_addresses_at_subscribe_never_reach_a_header(
    mail: Components, server: SmtpServer, web: httpx.AsyncClient, c: str
) -> None:
    accepted = 0
    for text in hostile_addresses(c):
        form = await web.post("/subscribe", data={"email": text})
        api = await web.post("/api/subscriptions", json={"email": text})
        assert (form.status_code, api.status_code) in ((422, 422), (200, 202)), text
        accepted += form.status_code == 200
        mail.jobs.clock.advance(hours=2)  # past the confirmation window: each accepted request mails
    await mail.dispatcher.drain()
    assert len(server.messages) == accepted
    for received in server.messages:
        assert received.rcpt_tos == ("jane@example.org",)
        message = parse(received.data)
        assert_clean_headers(message, CONFIRMATION_HEADERS)
        assert message["To"] == "jane@example.org"
    stored = await mail.subscribers.find("jane@example.org")
    assert accepted == 0 or stored is not None


# --- titles ----------------------------------------------------------------------------------------


def _yaml_escape(text: str) -> str:
    return "".join(f"\\u{ord(c):04x}" for c in text)


@pytest.mark.parametrize("c", BREAKS, ids=BREAK_IDS)
async def test_hostile_release_titles_never_reach_a_header(
    mail: Components, server: SmtpServer, c: str
) -> None:
    consent = Consent("cli", "test", mail.jobs.clock.now())
    await mail.audience.add_confirmed("reader@example.org", Preferences(), consent)
    # Written with a YAML escape, so the character reaches the title whatever YAML thinks of it raw.
    front = f'title: "Results{_yaml_escape(c)}{INJECTED}"\ndate: {RECENT}\n'
    Inbox(mail.settings.announcements_dir).write("results.md", f"---\n{front}---\n\nBody.\n")
    report = await jobs.scan(mail.jobs)
    await mail.dispatcher.drain()
    if report.problems:  # refused at ingest, with its line: nothing is mailed
        assert [p.line for p in report.problems] == [2]
        assert server.messages == []
        return
    (received,) = server.messages  # or accepted, and flattened onto one line by the renderer
    message = parse(received.data)
    assert_clean_headers(message, LIST_HEADERS)
    assert message["Subject"] == f"Results {INJECTED}"


@pytest.mark.parametrize("c", BREAKS, ids=BREAK_IDS)
async def test_the_renderer_flattens_hostile_titles_without_the_ingest_checks(
    mail: Components, c: str
) -> None:
    """Below ingest: a title that somehow carries a control still makes a one-line Subject."""
    await publish(mail, "results.md", title="Results")
    release = await mail.releases.get("results")
    assert release is not None
    hostile = replace(release, announcement=replace(release.announcement, title=f"Results{c}{INJECTED}"))
    envelope = await mail.dispatcher.composer.single(hostile, "reader@example.org", START)
    message = parse(envelope.data)
    assert_clean_headers(message, LIST_HEADERS)
    assert message["Subject"] == f"Results {INJECTED}"


# --- tokens ----------------------------------------------------------------------------------------


async def test_tokens_in_list_unsubscribe_and_links_are_url_safe_and_read_back(
    mail: Components, server: SmtpServer
) -> None:
    consent = Consent("cli", "test", mail.jobs.clock.now())
    added, _ = await mail.audience.add_confirmed("reader@example.org", Preferences(), consent)
    await publish(mail, title="News")
    await mail.dispatcher.drain()
    (received,) = server.messages
    message = parse(received.data)
    assert_clean_headers(message, LIST_HEADERS)
    match = re.fullmatch(
        rf"<https://press\.example\.org/unsubscribe/({TOKEN})>, "
        rf"<mailto:press@example\.org\?subject=unsubscribe%20({TOKEN})>",
        str(message["List-Unsubscribe"]),
    )
    assert match is not None, message["List-Unsubscribe"]
    assert match.group(1) == match.group(2)
    assert mail.tokens.read(Purpose.UNSUBSCRIBE, match.group(1)) == (added.id, 0)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


# --- names from the settings -----------------------------------------------------------------------


@pytest.mark.parametrize("c", BREAKS, ids=BREAK_IDS)
@pytest.mark.parametrize("key", ["site_title", "mail_from_name"])
def test_names_that_go_into_headers_are_refused_at_start_if_they_break_a_line(key: str, c: str) -> None:
    with pytest.raises(ValidationError, match="must be one line"):
        Settings(**{key: f"Press office{c}{INJECTED}"})


# --- below the doors: an address that is already stored --------------------------------------------


@pytest.mark.parametrize(
    "email",
    [f"jane@example.org\r\n{INJECTED}", "jane@example.org\n", "ja\x00ne@example.org", "jané@example.org"],
)
async def test_an_address_already_stored_that_a_header_cannot_hold_is_skipped_not_sent(
    mail: Components, email: str
) -> None:
    """The doors refuse such addresses; one stored by other means must neither inject nor stop a batch."""
    hostile, good = (
        Claimed(
            delivery_id=n, subscriber_id=n, email=address,
            subscriber_state=SubscriberState.PENDING, generation=1, lang="en",
            kind=DeliveryKind.CONFIRMATION, key=f"confirm:{n}:0", release_id=None, attempts=0,
            expires_at=START + timedelta(days=1),
        )
        for n, address in ((1, email), (2, "joe@example.org"))
    )  # fmt: skip
    composed = await mail.dispatcher.composer.compose([hostile, good], START)
    assert composed.skipped == {"the address cannot be written in a mail header": [1]}
    assert list(composed.envelopes) == [2]
    assert_clean_headers(parse(composed.envelopes[2][0].data), CONFIRMATION_HEADERS)

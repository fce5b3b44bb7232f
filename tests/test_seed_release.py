"""The seed release (a real PDF-to-text export) end to end: its feed entries, page and bulletin are golden.

The file is dropped unchanged into the inbox of a service built with the shared fixtures, scanned,
published and mailed to one subscriber through the file outbox. Volatile parts (signed tokens, whose
timestamps come from the real time) are normalised; everything else is compared byte for byte.

Regenerate the golden files after an intended change with:
    UPDATE_GOLDEN=1 pytest tests/test_seed_release.py
"""

from __future__ import annotations

import re
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from html import unescape as html_unescape
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from service import jobs
from service.models import Consent
from service.render.site import FeedKind
from service.runtime import Components
from service.store.subscribers import Preferences
from tests.conftest import FakeClock, Inbox
from tests.render.test_bulletin import golden

SEED = (Path(__file__).resolve().parent / "data" / "plaintext" / "seed.txt").read_bytes()
NAME = "2020-02-12-carnot-label"
PARIS = ZoneInfo("Europe/Paris")
TITLE = (
    "The Carnot Institutes Télécom &amp; Société Numérique and M.I.N.E.S, in which the IMT schools are "
    "heavily involved, have again been awarded the Carnot label to develop R&amp;D in companies for the "
    "benefit of the economy"
)
# Signed tokens carry the real time of signing: the only part of the output that is not reproducible.
TOKEN = re.compile(r"(/(?:unsubscribe|preferences|confirm)/|subject=unsubscribe%20)[A-Za-z0-9_.-]+")


def normalise(text: str) -> str:
    return TOKEN.sub(r"\1TOKEN", text)


def element(tag: str, document: str, containing: str) -> str:
    """The one `<tag ...>...</tag>` of `document` that contains `containing`."""
    found = [
        match.group(0)
        for match in re.finditer(rf"<{tag}[\s>].*?</{tag}>", document, re.S)
        if containing in match.group(0)
    ]
    assert len(found) == 1, f"{len(found)} <{tag}> elements contain {containing!r}"
    return found[0] + "\n"


@pytest.fixture
async def published(parts: Components, inbox: Inbox, clock: FakeClock) -> Components:
    """The seed scanned in on its publication morning, with one confirmed subscriber, bulletin sent."""
    clock.set(datetime(2020, 2, 12, 9, 30, tzinfo=PARIS))  # recent enough to be mailed
    consent = Consent("cli", "test", clock.now())
    await parts.audience.add_confirmed("reader@example.com", Preferences(), consent)
    inbox.write(f"{NAME}.txt", SEED)
    report = await jobs.scan(parts.jobs)
    assert (report.created, report.problems) == ((NAME,), ())
    await parts.dispatcher.drain()
    return parts


async def test_seed_atom_entry(published: Components) -> None:
    feed = await published.views.feed(FeedKind.ATOM)
    assert feed is not None
    entry = element("entry", feed.body.decode(), NAME)
    golden("seed.atom", entry.encode())
    assert f"<title>{TITLE}</title>" in entry
    assert "<published>2020-02-12T00:00:00+00:00</published>" in entry  # midnight in `timezone` (UTC here)
    assert "&lt;h2&gt;The Carnot label&lt;/h2&gt;" in entry
    assert "Press release" not in entry


async def test_seed_rss_item(published: Components) -> None:
    feed = await published.views.feed(FeedKind.RSS)
    assert feed is not None
    item = element("item", feed.body.decode(), NAME)
    golden("seed.rss", item.encode())
    assert f"<title>{TITLE}</title>" in item
    assert "<pubDate>Wed, 12 Feb 2020 00:00:00 +0000</pubDate>" in item
    assert "&lt;h2&gt;The Carnot label&lt;/h2&gt;" in item
    assert "Press release" not in item


async def test_seed_page_article(published: Components) -> None:
    page = await published.views.announcement(NAME)
    assert page is not None
    article = element("article", page.body.decode(), "The Carnot label")
    golden("seed.html", article.encode())
    assert f"<h1>{TITLE}</h1>" in article
    assert "<em>Paris, February 12th 2020</em> — The Carnot Institutes" in article  # the dateline, shown
    assert "<h2>The Carnot label</h2>" in article
    assert '<time datetime="2020-02-12T00:00:00Z">February 12, 2020</time>' in article
    assert "Press release" not in article
    assert "&gt; The Carnot" not in article


def bulletin(parts: Components) -> tuple[bytes, EmailMessage, str, str]:
    """The one message in the outbox: its bytes, the message, its text part and its HTML part."""
    [path] = sorted(parts.settings.effective_outbox_dir.glob("*.eml"))
    data = path.read_bytes()
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    text_part, html_part = message.get_body(("plain",)), message.get_body(("html",))
    assert text_part is not None
    assert html_part is not None
    return data, message, text_part.get_content().replace("\r\n", "\n"), html_part.get_content()


async def test_seed_bulletin(published: Components) -> None:
    data, message, text, html = bulletin(published)
    golden("seed.eml", normalise(data.decode()).encode())
    assert message["To"] == "reader@example.com"
    assert message["Subject"] == html_unescape(TITLE)
    assert "Paris, February 12th 2020 — The Carnot Institutes" in text
    assert "\nThe Carnot label\n----------------\n" in text  # the section heading, underlined
    assert not re.search(r"Press release(?!s)", text + html)  # the marker; "Press releases" is the site
    assert re.search(r"<h2[^>]*>The Carnot label</h2>", html)
    assert "<em>Paris, February 12th 2020</em> — The Carnot Institutes" in html


async def test_seed_bulletin_shows_the_lead_once(published: Components) -> None:
    _, _, text, html = bulletin(published)
    assert " ".join(text.split()).count("for the benefit of the economy.") == 1
    assert html.count("for the benefit of the economy.") == 1

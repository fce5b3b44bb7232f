"""One release in several languages: ids, feeds per language, one bulletin each in the right language."""

from __future__ import annotations

import asyncio
import logging
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from service import jobs
from service.models import Consent, Frequency
from service.runtime import Components, build
from service.store.subscribers import Preferences
from tests.conftest import RECENT, FakeClock, Inbox, make_settings
from tests.delivery.smtpd import SmtpServer
from tests.web.support import feed_ids


def drop_pair(parts: Components, **fields: object) -> Inbox:
    inbox = Inbox(parts.settings.announcements_dir)
    inbox.release("carnot.en.md", title="Carnot label renewed", date=RECENT, **fields)
    inbox.release("carnot.fr.md", title="Le label Carnot renouvelé", date=RECENT, **fields)
    return inbox


async def subscribe(parts: Components, email: str, lang: str, **prefs: object) -> None:
    consent = Consent("cli", "test", parts.jobs.clock.now())
    await parts.audience.add_confirmed(email, Preferences(lang=lang, **prefs), consent)  # type: ignore[arg-type]


def subjects(server: SmtpServer) -> dict[str, str]:
    found: dict[str, str] = {}
    for envelope in server.messages:
        message = message_from_bytes(envelope.data, policy=policy.default)
        assert isinstance(message, EmailMessage)
        for rcpt in envelope.rcpt_tos:
            assert rcpt not in found, f"{rcpt} got two bulletins"
            found[rcpt] = str(message["Subject"])
    return found


async def test_files_named_by_language_are_versions_of_one_release(parts: Components) -> None:
    drop_pair(parts)
    report = await jobs.scan(parts.jobs)
    assert sorted(report.created) == ["carnot", "carnot-fr"]
    english, french = await parts.releases.get("carnot"), await parts.releases.get("carnot-fr")
    assert english is not None
    assert french is not None
    assert (english.announcement.lang, english.announcement.translation_of) == ("en", None)
    assert (french.announcement.lang, french.announcement.translation_of) == ("fr", "carnot")
    assert await parts.releases.versions(french) == [("en", "carnot"), ("fr", "carnot-fr")]


async def test_translation_of_links_files_with_their_own_ids(parts: Components) -> None:
    inbox = Inbox(parts.settings.announcements_dir)
    inbox.release("budget.md", title="Budget", date=RECENT)
    inbox.release("budget-francais.md", title="Budget (FR)", date=RECENT, lang="fr", translation_of="budget")
    await jobs.scan(parts.jobs)
    french = await parts.releases.get("budget-francais")
    assert french is not None
    assert await parts.releases.versions(french) == [("en", "budget"), ("fr", "budget-francais")]


async def test_the_site_feed_lists_one_version_and_each_language_has_its_feed(
    parts: Components, client: httpx.AsyncClient
) -> None:
    drop_pair(parts)
    inbox = Inbox(parts.settings.announcements_dir)
    inbox.release("seulement.fr.md", title="Seulement en français", date="2026-11-01")
    await jobs.scan(parts.jobs)
    site = await client.get("/feed.atom")
    assert feed_ids("atom", site.content) == ["carnot", "seulement-fr"]  # English preferred, else any
    french = await client.get("/fr/feed.atom")
    assert french.status_code == 200
    assert feed_ids("atom", french.content) == ["carnot-fr", "seulement-fr"]
    assert b"<language>fr</language>" in (await client.get("/fr/feed.rss")).content
    assert b"(Fran\xc3\xa7ais)" in french.content  # the feed's title names its language
    assert feed_ids("json", (await client.get("/en/feed.json")).content) == ["carnot"]
    for missing in ("/de/feed.atom", "/xx/feed.rss", "/topics/feed.atom"):
        assert (await client.get(missing)).status_code == 404, missing
    archive = (await client.get("/")).text
    assert "/announcements/carnot-fr" not in archive
    assert (await client.get("/announcements/carnot-fr")).status_code == 200


async def test_each_subscriber_gets_one_bulletin_in_their_language(
    mail: Components, server: SmtpServer
) -> None:
    await subscribe(mail, "anglais@example.com", "en")
    await subscribe(mail, "francais@example.com", "fr")
    await subscribe(mail, "quebec@example.com", "fr-CA")
    await subscribe(mail, "deutsch@example.com", "de")  # no German version: the default language's
    drop_pair(mail)
    await jobs.scan(mail.jobs)
    await mail.dispatcher.drain()
    assert subjects(server) == {
        "anglais@example.com": "Carnot label renewed",
        "francais@example.com": "Le label Carnot renouvelé",
        "quebec@example.com": "Le label Carnot renouvelé",
        "deutsch@example.com": "Carnot label renewed",
    }
    await jobs.scan(mail.jobs)
    await jobs.fan_out(mail.jobs)
    await mail.dispatcher.drain()
    assert len(server.messages) == 4


async def test_a_version_published_after_the_bulletin_is_not_mailed_again(
    mail: Components, server: SmtpServer, clock: FakeClock
) -> None:
    await subscribe(mail, "francais@example.com", "fr")
    inbox = Inbox(mail.settings.announcements_dir)
    inbox.release("carnot.en.md", title="Carnot label renewed", date=RECENT)
    await jobs.scan(mail.jobs)
    await mail.dispatcher.drain()
    clock.advance(minutes=10)
    inbox.release("carnot.fr.md", title="Le label Carnot renouvelé", date=RECENT)
    assert (await jobs.scan(mail.jobs)).created == ("carnot-fr",)
    await mail.dispatcher.drain()
    assert subjects(server) == {"francais@example.com": "Carnot label renewed"}


async def test_a_digest_carries_one_version_of_each_release(mail: Components, server: SmtpServer) -> None:
    await subscribe(mail, "francais@example.com", "fr", frequency=Frequency.DAILY)
    drop_pair(mail)
    await jobs.scan(mail.jobs)
    assert await jobs.queue_digests(mail.jobs, Frequency.DAILY) == 1
    await mail.dispatcher.drain()
    [envelope] = server.messages
    text = envelope.data.decode()
    assert "Le label Carnot renouvel" in text
    assert "Carnot label renewed" not in text


async def test_each_version_page_links_the_others_with_hreflang(
    parts: Components, client: httpx.AsyncClient
) -> None:
    drop_pair(parts)
    await jobs.scan(parts.jobs)
    french = (await client.get("/announcements/carnot-fr")).text
    base = parts.settings.base_url
    assert f'<link rel="alternate" hreflang="en" href="{base}/announcements/carnot">' in french
    assert f'<link rel="alternate" hreflang="fr" href="{base}/announcements/carnot-fr">' in french
    assert "Également en :" in french
    assert f'<a href="{base}/announcements/carnot" hreflang="en" lang="en">English</a>' in french
    english = (await client.get("/announcements/carnot")).text
    assert f'<a href="{base}/announcements/carnot-fr" hreflang="fr" lang="fr">Français</a>' in english
    assert "Also in:" in english
    Inbox(parts.settings.announcements_dir).release("alone.md", title="Alone", date=RECENT)
    await jobs.scan(parts.jobs)
    alone = (await client.get("/announcements/alone")).text
    assert "hreflang" not in alone


def test_a_site_language_without_a_catalog_is_reported_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, languages=["en", "fr", "de"])
    with caplog.at_level(logging.WARNING):
        parts = build(settings)
    asyncio.run(parts.close())
    assert "no template catalog for de: pages and mails in it use the English text" in caplog.text

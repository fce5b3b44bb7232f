"""Bulletins end to end: subscribe, confirm, publish, and what a real SMTP server receives.

The server is aiosmtpd in the test's own event loop (tests/delivery/smtpd.py); the assertions are on
what it received, never on internal counters alone. Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from service import jobs
from service.models import Consent, DeliveryState, Frequency, SubscriberState
from service.render.site import FeedKind
from service.runtime import Components
from service.store.subscribers import Preferences
from tests.conftest import RECENT, START, FakeClock, Inbox, publish
from tests.delivery.smtpd import SmtpServer


def parse(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def parts_of(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert html is not None
    return text.get_content(), html.get_content()


async def subscriber(parts: Components, email: str, **prefs: object) -> int:
    consent = Consent("cli", "test", parts.jobs.clock.now())
    added, _ = await parts.audience.add_confirmed(email, Preferences(**prefs), consent)  # type: ignore[arg-type]
    return added.id


def recipients(server: SmtpServer) -> list[str]:
    return sorted(r for m in server.messages for r in m.rcpt_tos)


async def test_double_opt_in_sends_one_confirmation_and_its_link_confirms(
    mail: Components, server: SmtpServer
) -> None:
    consent = Consent("web", "https://press.example.org/subscribe", mail.jobs.clock.now(), "127.0.0.1")
    first = await mail.audience.subscribe("new@example.com", Preferences(), consent)
    await mail.audience.subscribe("new@example.com", Preferences(), consent)  # within the window: no 2nd mail
    await mail.dispatcher.drain()
    assert recipients(server) == ["new@example.com"]
    message = parse(server.messages[0].data)
    assert "List-Unsubscribe" not in message  # not list mail: nobody is subscribed yet
    text, html = parts_of(message)
    link = re.search(r"https://press\.example\.org/confirm/(\S+)", text)
    assert link is not None
    assert link.group(0) in html
    assert "new@example.com" not in link.group(1)
    confirmed = await mail.audience.confirm(link.group(1))
    assert confirmed is not None
    assert (confirmed.id, confirmed.state) == (first.subscriber.id, SubscriberState.CONFIRMED)


async def test_nothing_but_the_confirmation_before_confirming(mail: Components, server: SmtpServer) -> None:
    consent = Consent("web", "form", mail.jobs.clock.now())
    await mail.audience.subscribe("pending@example.com", Preferences(), consent)
    await publish(mail)
    await mail.dispatcher.drain()
    kinds = [parse(m.data)["Subject"] for m in server.messages]
    assert len(kinds) == 1
    assert kinds[0].startswith("Confirm your subscription")


async def test_a_release_reaches_every_matching_subscriber_exactly_once(
    mail: Components, server: SmtpServer
) -> None:
    await subscriber(mail, "all@example.com")
    await subscriber(mail, "research@example.com", topics=("research",))
    await subscriber(mail, "awards@example.com", topics=("awards",))
    await subscriber(mail, "daily@example.com", frequency=Frequency.DAILY)
    gone = await subscriber(mail, "gone@example.com")
    await mail.subscribers.unsubscribe(gone, mail.jobs.clock.now())
    await publish(mail, title="Research news", topics=["research"])
    await mail.dispatcher.drain()
    assert recipients(server) == ["all@example.com", "research@example.com"]
    await jobs.scan(mail.jobs)  # a rescan, a restart: never a second bulletin
    await mail.dispatcher.drain()
    assert len(server.messages) == 2


async def test_bulletin_headers_and_links(mail: Components, server: SmtpServer) -> None:
    await subscriber(mail, "reader@example.com")
    await publish(mail, title="Télécom & Société: a long title that is long enough to fold " * 2)
    await mail.dispatcher.drain()
    [received] = server.messages
    assert received.mail_from == "press@example.org"
    raw_headers = received.data.split(b"\r\n\r\n", 1)[0].decode().replace("\r\n", "\n")
    message = parse(received.data)
    assert message["From"] == "Example Press Office <press@example.org>"
    assert message["To"] == "reader@example.com"
    assert message["Subject"].startswith("Télécom & Société")
    assert message["Date"] is not None
    assert re.fullmatch(r"<bulletin\.news\.\d+@example\.org>", message["Message-ID"])
    assert message["List-Id"] == "Press releases <announcements.example.org>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Auto-Submitted"] == "auto-generated"
    unsubscribe = re.search(r"^List-Unsubscribe: (.*)$", raw_headers, re.M)
    assert unsubscribe is not None
    value = unsubscribe.group(1)
    assert "=?" not in value  # never RFC 2047-encoded, however long
    https, mailto = re.fullmatch(r"<(https://[^>]+)>, <(mailto:[^>]+)>", value).groups()  # type: ignore[union-attr]
    assert https.startswith("https://press.example.org/unsubscribe/")
    assert mailto.startswith("mailto:press@example.org?subject=unsubscribe%20")
    assert message.get_content_type() == "multipart/alternative"
    text, html = parts_of(message)
    for part in (text, html):
        assert https in part
        assert "https://press.example.org/preferences/" in part
        assert "https://press.example.org/announcements/news" in part
    assert "<style" not in html  # CSS inlined for mail clients
    assert 'style="' in html
    assert all(len(line) <= 998 for line in received.data.split(b"\r\n"))


async def test_one_click_unsubscribe_token_from_the_bulletin_works(
    mail: Components, server: SmtpServer
) -> None:
    sub = await subscriber(mail, "reader@example.com")
    await publish(mail)
    await mail.dispatcher.drain()
    value = parse(server.messages[0].data)["List-Unsubscribe"]
    token = re.search(r"/unsubscribe/([^>]+)>", value).group(1)  # type: ignore[union-attr]
    left = await mail.audience.unsubscribe(token)
    assert left is not None
    assert left.id == sub
    assert left.state is SubscriberState.UNSUBSCRIBED
    await publish(mail, "second.md", title="Second")
    await mail.dispatcher.drain()
    assert len(server.messages) == 1  # suppressed from now on


async def test_embargoed_release_is_mailed_only_at_its_time(
    mail: Components, server: SmtpServer, clock: FakeClock
) -> None:
    await subscriber(mail, "reader@example.com")
    await publish(mail, publish_at=(START + timedelta(hours=2)).isoformat())
    await mail.dispatcher.drain()
    assert server.messages == []
    clock.advance(hours=2)
    await jobs.publish_due(mail.jobs)
    await mail.dispatcher.drain()
    assert recipients(server) == ["reader@example.com"]


async def test_a_held_release_is_mailed_only_when_an_operator_releases_it(
    mail: Components, server: SmtpServer, clock: FakeClock
) -> None:
    await subscriber(mail, "reader@example.com")
    await publish(mail, publish_at=(START + timedelta(minutes=10)).isoformat())
    clock.advance(hours=5)  # down through the embargo and the grace: held, not mailed late
    await jobs.scan(mail.jobs)
    await mail.dispatcher.drain()
    assert server.messages == []
    assert await jobs.release_held(mail.jobs, "news") is not None
    await mail.dispatcher.drain()
    assert recipients(server) == ["reader@example.com"]


async def test_an_archive_release_is_published_but_not_mailed(mail: Components, server: SmtpServer) -> None:
    await subscriber(mail, "reader@example.com")
    Inbox(mail.settings.announcements_dir).release("old.md", date="2020-02-12")
    await jobs.scan(mail.jobs)
    await mail.dispatcher.drain()
    assert server.messages == []
    assert await mail.releases.get("old") is not None


@pytest.mark.parametrize("reply", ["451 4.3.0 Try again later", "421 4.7.0 Too busy, closing"])
async def test_temporary_failures_are_retried_then_delivered(
    mail: Components, server: SmtpServer, clock: FakeClock, reply: str
) -> None:
    await subscriber(mail, "reader@example.com")
    server.fail_next(2, reply)
    await publish(mail)
    await mail.dispatcher.drain()
    assert server.messages == []
    progress = await mail.ledger.progress()
    assert progress["bulletin news"][DeliveryState.RETRY] == 1
    for _ in range(3):
        clock.advance(minutes=5)
        await mail.dispatcher.drain()
    assert recipients(server) == ["reader@example.com"]
    metrics = mail.metrics.render().decode()
    assert 'announce_deliveries_total{outcome="temporary"} 2.0' in metrics
    assert 'announce_deliveries_total{outcome="sent"} 1.0' in metrics
    assert "announce_send_duration_seconds_count 3.0" in metrics


async def test_a_5xx_bounces_and_is_never_retried(
    mail: Components, server: SmtpServer, clock: FakeClock
) -> None:
    sub = await subscriber(mail, "nobody@example.com")
    await subscriber(mail, "reader@example.com")
    server.refuse("nobody@example.com", "550 5.1.1 No such user")
    await publish(mail)
    await mail.dispatcher.drain()
    clock.advance(days=1)
    await mail.dispatcher.drain()
    assert recipients(server) == ["reader@example.com"]
    bounced = await mail.subscribers.get(sub)
    assert bounced is not None
    assert bounced.state is SubscriberState.BOUNCED
    assert (await mail.ledger.progress())["bulletin news"][DeliveryState.FAILED] == 1


async def test_lost_connection_after_data_is_unknown_then_retried(
    mail: Components, server: SmtpServer, clock: FakeClock
) -> None:
    await subscriber(mail, "reader@example.com")
    server.disconnect_after_data(1)
    await publish(mail)
    await mail.dispatcher.drain()
    assert (await mail.ledger.progress())["bulletin news"][DeliveryState.UNKNOWN] == 1
    clock.advance(minutes=11)
    await mail.dispatcher.drain()
    assert recipients(server) == ["reader@example.com"]  # the cut-off copy was never accepted here
    assert len(server.dropped) == 1


async def test_server_down_then_up_loses_nothing(
    mail: Components, server: SmtpServer, clock: FakeClock
) -> None:
    for n in range(5):
        await subscriber(mail, f"r{n}@example.com")
    await server.stop()
    await publish(mail)
    await mail.dispatcher.drain()
    await server.start()
    for _ in range(4):
        clock.advance(minutes=10)
        await mail.dispatcher.drain()
    assert recipients(server) == [f"r{n}@example.com" for n in range(5)]


async def test_unsubscribed_before_the_send_is_skipped(mail: Components, server: SmtpServer) -> None:
    sub = await subscriber(mail, "reader@example.com")
    await publish(mail)
    await mail.subscribers.unsubscribe(sub, mail.jobs.clock.now())
    await mail.dispatcher.drain()
    assert server.messages == []
    assert (await mail.ledger.progress())["bulletin news"][DeliveryState.SKIPPED] == 1


async def test_correction_goes_to_earlier_recipients_threaded(
    mail: Components, server: SmtpServer, clock: FakeClock
) -> None:
    await subscriber(mail, "early@example.com")
    await publish(mail, title="Figures", body="We hired 12 people.")
    await mail.dispatcher.drain()
    await subscriber(mail, "late@example.com")
    clock.advance(hours=1)
    await publish(mail, title="Figures", body="We hired 21 people.")  # an edit without a note: no mail
    await mail.dispatcher.drain()
    assert len(server.messages) == 1
    clock.advance(hours=1)
    await publish(mail, title="Figures", body="We hired 21 people.", correction="The number was 21, not 12.")
    await mail.dispatcher.drain()
    assert recipients(server) == ["early@example.com", "early@example.com"]
    original, notice = (parse(m.data) for m in server.messages)
    assert notice["Subject"] == "Correction: Figures"
    assert notice["In-Reply-To"] == original["Message-ID"]
    text, _ = parts_of(notice)
    assert "The number was 21, not 12." in text
    assert "21 people" in text


async def test_the_page_and_feed_show_the_correction_and_its_time(mail: Components, clock: FakeClock) -> None:
    await publish(
        mail, title="Figures", body="We hired 21 people.", correction="The number was 21, <not> 12."
    )
    page = await mail.views.announcement("news")
    atom = await mail.views.feed(FeedKind.ATOM)
    assert page is not None
    assert atom is not None
    stamp = clock.now().isoformat()
    assert f'<strong>Correction <time datetime="{stamp}">' in page.body.decode()
    assert "The number was 21, &lt;not&gt; 12." in page.body.decode()
    assert "The number was 21, &amp;lt;not&amp;gt; 12." in atom.body.decode()  # escaped HTML, inside XML


async def test_daily_digest_collects_what_was_published_since_the_last_one(
    mail: Components, server: SmtpServer, clock: FakeClock
) -> None:
    await subscriber(mail, "daily@example.com", frequency=Frequency.DAILY)
    await subscriber(mail, "weekly-awards@example.com", frequency=Frequency.WEEKLY, topics=("awards",))
    await publish(mail, "one.md", title="First news", topics=["research"])
    clock.advance(hours=1)
    await publish(mail, "two.md", title="Second news", topics=["awards"])
    await mail.dispatcher.drain()
    assert server.messages == []  # digest subscribers get no immediate bulletin
    clock.advance(hours=20)
    assert await jobs.queue_digests(mail.jobs, Frequency.DAILY) == 1
    assert await jobs.queue_digests(mail.jobs, Frequency.DAILY) == 0  # once per day, whichever node runs it
    await mail.dispatcher.drain()
    [digest] = (parse(m.data) for m in server.messages)
    assert digest["To"] == "daily@example.com"
    assert digest["Subject"] == "Press releases: new releases (2)"
    assert digest["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text, _ = parts_of(digest)
    assert text.index("Second news") < text.index("First news")
    clock.advance(days=1)
    assert await jobs.queue_digests(mail.jobs, Frequency.DAILY) == 0  # nothing new since
    assert await jobs.queue_digests(mail.jobs, Frequency.WEEKLY) == 1
    await mail.dispatcher.drain()
    weekly = parse(server.messages[-1].data)
    assert weekly["To"] == "weekly-awards@example.com"
    assert weekly["Subject"] == "Press releases: new release (1)"  # one release: singular (ngettext)


async def test_digest_jobs_run_at_the_configured_local_time(mail: Components) -> None:
    from zoneinfo import ZoneInfo

    from service.scheduler import DigestSchedule, Scheduler

    paris = ZoneInfo("Europe/Paris")
    scheduler = Scheduler(mail.jobs, 3600, digests=DigestSchedule(8, 0, "mon", paris))
    await scheduler.start()
    try:
        runs = scheduler.digest_jobs()
    finally:
        await scheduler.stop()
    daily, weekly = runs["digest:daily"], runs["digest:weekly"]
    assert isinstance(daily, datetime)
    assert isinstance(weekly, datetime)
    assert (daily.astimezone(paris).hour, daily.astimezone(paris).minute) == (8, 0)
    assert weekly.astimezone(paris).strftime("%a %H:%M") == "Mon 08:00"


async def test_an_archive_import_is_not_in_the_next_digest(
    mail: Components, server: SmtpServer, clock: FakeClock
) -> None:
    await subscriber(mail, "daily@example.com", frequency=Frequency.DAILY)
    Inbox(mail.settings.announcements_dir).release("old.md", date="2020-02-12")
    await jobs.scan(mail.jobs)
    clock.advance(hours=12)
    assert await jobs.queue_digests(mail.jobs, Frequency.DAILY) == 0


async def test_a_derived_summary_is_not_repeated_above_the_body(mail: Components, server: SmtpServer) -> None:
    await subscriber(mail, "reader@example.com")
    Inbox(mail.settings.announcements_dir).write(
        "plain.md", f"---\ntitle: Plain\ndate: {RECENT}\n---\n\nThe only paragraph, said once.\n"
    )
    await jobs.scan(mail.jobs)
    await mail.dispatcher.drain()
    text, html = parts_of(parse(server.messages[0].data))
    assert text.count("The only paragraph, said once.") == 1
    assert html.count("The only paragraph, said once.") == 1


@pytest.mark.parametrize("mail_overrides", [{"bulletin_attach_max_bytes": 1000}])
async def test_small_attachments_are_attached_and_large_ones_linked(
    mail: Components, server: SmtpServer
) -> None:
    await subscriber(mail, "reader@example.com")
    inbox = Inbox(mail.settings.announcements_dir)
    inbox.write("news.pdf", b"%PDF-1.4 small fact sheet\n%%EOF\n")
    inbox.write("news.big.png", b"\x89PNG" + b"x" * 5000)
    await publish(mail, attachments=["news.pdf"])
    await mail.dispatcher.drain()
    [envelope] = server.messages
    message = parse(envelope.data)
    assert message.get_content_type() == "multipart/mixed"
    attached = {part.get_filename(): part.get_content() for part in message.iter_attachments()}
    assert attached == {"news.pdf": b"%PDF-1.4 small fact sheet\n%%EOF\n"}
    text = message.get_body(("plain",))
    assert text is not None
    links = text.get_content()
    assert "news.big.png" in links  # still linked, with the attached one
    assert "/announcements/news/attachments/news.pdf" in links


async def test_attachments_are_only_linked_by_default(mail: Components, server: SmtpServer) -> None:
    await subscriber(mail, "reader@example.com")
    Inbox(mail.settings.announcements_dir).write("news.pdf", b"%PDF-1.4 small\n%%EOF\n")
    await publish(mail)
    await mail.dispatcher.drain()
    message = parse(server.messages[0].data)
    assert message.get_content_type() == "multipart/alternative"
    assert list(message.iter_attachments()) == []


async def test_a_release_queued_as_a_drain_ends_is_sent_without_waiting_for_the_next_poll(
    mail: Components, server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    await subscriber(mail, "all@example.com")
    dispatcher = mail.dispatcher
    drain = dispatcher.drain
    drains = 0

    async def drain_then_queue_another() -> int:
        # The race: the drain's last claim found nothing, then a release is queued (and wake() is
        # called) before the dispatcher starts waiting. That wake must not be lost.
        nonlocal drains
        handled = await drain()
        drains += 1
        if drains == 1:
            await publish(mail, "second.md", title="Second")
        return handled

    monkeypatch.setattr(dispatcher, "drain", drain_then_queue_another)
    await publish(mail, "first.md", title="First")
    stop = asyncio.Event()
    runner = asyncio.create_task(dispatcher.run(stop))
    try:
        async with asyncio.timeout(3):  # the next poll would come after 5 s
            while len(server.messages) < 2:  # noqa: ASYNC110 - polling what the server received
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await runner
    assert sorted(parse(m.data)["Subject"] for m in server.messages) == ["First", "Second"]

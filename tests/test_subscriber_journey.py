"""A subscriber's whole journey through the real ASGI app and a real SMTP server, on both databases:
subscribe by the API, confirm from the mail's link, receive a bulletin, unsubscribe with one click.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from urllib.parse import urlsplit

import httpx
import pytest

from service.models import Consent, SubscriberState
from service.runtime import Components, make_app
from service.store.subscribers import Preferences
from tests.conftest import publish
from tests.delivery.smtpd import SmtpServer

BASE = "https://press.example.org"


@pytest.fixture
async def http(mail: Components) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app(mail)), base_url=BASE) as client:
        yield client


def last_mail(server: SmtpServer) -> EmailMessage:
    message = message_from_bytes(server.messages[-1].data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def path_of(url: str) -> str:
    assert url.startswith(BASE)
    return urlsplit(url).path


async def test_subscribe_confirm_receive_unsubscribe(
    mail: Components,
    server: SmtpServer,
    http: httpx.AsyncClient,
) -> None:
    await publish(
        mail, "first.md", title="Before anyone subscribed", topics=["research"]
    )  # topics must exist
    answer = await http.post(
        "/api/subscriptions", json={"email": "Reader@Example.com", "topics": ["research"]}
    )
    assert answer.status_code == 202
    await mail.dispatcher.drain()
    confirmation = last_mail(server)
    assert confirmation["To"] == "reader@example.com"
    link = re.search(rf"{re.escape(BASE)}/confirm/\S+", text_of(confirmation))
    assert link is not None
    confirmed = await http.get(path_of(link.group(0)))
    assert confirmed.status_code == 200
    subscriber = await mail.subscribers.find("reader@example.com")
    assert subscriber is not None
    assert subscriber.state is SubscriberState.CONFIRMED

    await publish(mail, title="Research news", topics=["research"])
    await publish(mail, "other.md", title="Not for this reader", topics=["awards"])
    await mail.dispatcher.drain()
    bulletin = last_mail(server)
    assert bulletin["Subject"] == "Research news"
    assert len(server.messages) == 2  # the confirmation and one bulletin

    one_click = re.search(r"<(https://[^>]+)>", bulletin["List-Unsubscribe"])
    assert one_click is not None
    page = await http.get(path_of(one_click.group(1)))
    assert page.status_code == 200  # a page with a button; nothing changed yet
    still = await mail.subscribers.find("reader@example.com")
    assert still is not None
    assert still.state is SubscriberState.CONFIRMED
    done = await http.post(
        path_of(one_click.group(1)),
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (done.status_code, done.headers.get("location")) == (200, None)
    gone = await mail.subscribers.find("reader@example.com")
    assert gone is not None
    assert gone.state is SubscriberState.UNSUBSCRIBED

    await publish(mail, "later.md", title="More research", topics=["research"])
    await mail.dispatcher.drain()
    assert len(server.messages) == 2  # suppressed


async def test_the_preferences_link_in_a_bulletin_opens_the_form(
    mail: Components,
    server: SmtpServer,
    http: httpx.AsyncClient,
) -> None:
    consent = Consent("cli", "test", mail.jobs.clock.now())
    await mail.audience.add_confirmed("reader@example.com", Preferences(), consent)
    await publish(mail)
    await mail.dispatcher.drain()
    link = re.search(rf"{re.escape(BASE)}/preferences/\S+", text_of(last_mail(server)))
    assert link is not None
    form = await http.get(path_of(link.group(0)))
    assert form.status_code == 200
    assert "reader@example.com" not in link.group(0)

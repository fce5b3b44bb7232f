"""Subscribing, confirming, unsubscribing and preferences over HTTP, through the real app and database.

The confirmation mail is not read (its sender is built elsewhere): links are made the way the
mail composer makes them, from the stored subscriber and the service's own `Tokens`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from itsdangerous import TimestampSigner

from service.logs import configure_logging
from service.models import Frequency, Subscriber, SubscriberState
from service.runtime import Components, make_app
from service.tokens import Purpose, Tokens, load_or_create_secret
from service.web.ratelimit import RateLimiter
from service.web.subscriptions import csrf_key, csrf_value
from tests.conftest import FakeClock
from tests.web.conftest import StartService
from tests.web.support import BASE_URL, HTML, active_content, read_html

PRIVATE = {"cache-control": "no-store", "referrer-policy": "same-origin"}
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


# --- helpers -------------------------------------------------------------------------------------


async def post_form(
    client: httpx.AsyncClient, email: str, *, topics: tuple[str, ...] = (), **fields: str
) -> httpx.Response:
    """POST /subscribe as a browser submits the form (urlencoded, topics repeated)."""
    data: dict[str, str | list[str]] = {"email": email, **fields}
    if topics:
        data["topics"] = list(topics)
    return await client.post("/subscribe", data=data)


async def stored(parts: Components, email: str) -> Subscriber:
    subscriber = await parts.subscribers.find(email)
    assert subscriber is not None, email
    return subscriber


async def queued(parts: Components, clock: FakeClock) -> int:
    """Ledger rows still to send (confirmation mails, here)."""
    return await parts.ledger.pending(clock.now(), True)


def confirm_token(parts: Components, subscriber: Subscriber) -> str:
    """The token of the confirmation mail's link (as the mail composer makes it)."""
    return parts.tokens.make(Purpose.CONFIRM, subscriber.id, subscriber.generation)


async def subscribed(
    client: httpx.AsyncClient, parts: Components, email: str, state: SubscriberState
) -> Subscriber:
    """An address brought to `state` through the HTTP doors."""
    assert (await post_form(client, email)).status_code == 200
    subscriber = await stored(parts, email)
    if state is SubscriberState.PENDING:
        return subscriber
    assert (await client.get(f"/confirm/{confirm_token(parts, subscriber)}")).status_code == 200
    if state is SubscriberState.UNSUBSCRIBED:
        token = parts.tokens.make(Purpose.UNSUBSCRIBE, subscriber.id)
        assert (await client.post(f"/unsubscribe/{token}", data=ONE_CLICK)).status_code == 200
    subscriber = await stored(parts, email)
    assert subscriber.state is state
    return subscriber


async def preferences_form(client: httpx.AsyncClient, token: str) -> dict[str, str]:
    """The hidden fields of the preferences page (the CSRF value)."""
    response = await client.get(f"/preferences/{token}")
    assert response.status_code == 200
    page = read_html(response.text)
    return {str(a["name"]): str(a["value"]) for a in page.attrs("input") if a.get("type") == "hidden"}


@asynccontextmanager
async def client_at(app: FastAPI, host: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client that the app sees coming from `host`."""
    transport = httpx.ASGITransport(app=app, client=(host, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def checked(page_text: str, kind: str) -> dict[str, bool]:
    """value -> checked, for the form's inputs of type `kind` (checkbox, radio)."""
    page = read_html(page_text)
    return {str(a["value"]): "checked" in a for a in page.attrs("input") if a.get("type") == kind}


def typed_email(page_text: str) -> str | None:
    """The value of the form's email field."""
    return next(a for a in read_html(page_text).attrs("input") if a.get("name") == "email")["value"]


def selected_language(page_text: str) -> list[str]:
    return [str(a["value"]) for a in read_html(page_text).attrs("option") if "selected" in a]


# --- the form ------------------------------------------------------------------------------------


async def test_form_has_labelled_fields_and_lists_published_topics(
    client: httpx.AsyncClient, sample: list[str]
) -> None:
    response = await client.get("/subscribe")
    assert response.status_code == 200
    assert response.headers["content-type"] == HTML
    page = read_html(response.text)
    (form,) = page.attrs("form")
    assert (form["method"], form["action"]) == ("post", "/subscribe")
    email = next(a for a in page.attrs("input") if a.get("name") == "email")
    assert email["type"] == "email"
    assert email["autocomplete"] == "email"
    # Every visible control has a label pointing at it.
    labelled = {a["for"] for a in page.attrs("label")}
    controls = [a for a in page.elements if a[0] in ("input", "select") and a[1].get("type") != "hidden"]
    assert controls
    assert all(attrs["id"] in labelled for _, attrs in controls)
    assert "Email address" in page.text["label"]
    assert "Language of the emails" in page.text["label"]
    assert checked(response.text, "checkbox") == {"awards": False, "research": False}
    assert "Leave every box unticked to receive all topics" in response.text
    assert [a["value"] for a in page.attrs("option")] == ["en", "fr"]
    assert selected_language(response.text) == ["en"]  # the site's language
    assert checked(response.text, "radio") == {"immediate": True, "daily": False, "weekly": False}
    assert "Topics" in page.text["legend"]
    assert "How often" in page.text["legend"]
    assert active_content(page) == []


async def test_form_without_published_topics_says_every_topic_is_sent(client: httpx.AsyncClient) -> None:
    response = await client.get("/subscribe")
    assert response.status_code == 200
    assert checked(response.text, "checkbox") == {}
    assert "You will receive every announcement" in response.text


# --- subscribing through the form ----------------------------------------------------------------


async def test_new_address_is_pending_with_one_queued_confirmation(
    client: httpx.AsyncClient, parts: Components, clock: FakeClock, sample: list[str]
) -> None:
    response = await post_form(
        client, " Jane.Doe@Example.ORG ", topics=("research",), lang="fr", frequency="weekly"
    )
    assert response.status_code == 200
    assert "Check your inbox" in response.text
    subscriber = await stored(parts, "jane.doe@example.org")
    assert subscriber.state is SubscriberState.PENDING
    assert (subscriber.topics, subscriber.lang, subscriber.frequency) == (
        ("research",),
        "fr",
        Frequency.WEEKLY,
    )
    assert subscriber.consent.method == "web"
    assert subscriber.consent.source == f"{BASE_URL}/subscribe"
    assert subscriber.consent.at == clock.now()
    assert subscriber.consent.ip == "127.0.0.1"
    assert await queued(parts, clock) == 1

    clock.advance(minutes=5)  # inside the confirmation window
    again = await post_form(client, "jane.doe@example.org", topics=("research",))
    assert again.status_code == 200
    assert again.content == response.content
    assert await queued(parts, clock) == 1


async def test_no_topic_ticked_means_every_topic(
    client: httpx.AsyncClient, parts: Components, sample: list[str]
) -> None:
    assert (await post_form(client, "all@example.org")).status_code == 200
    subscriber = await stored(parts, "all@example.org")
    assert subscriber.topics == ()
    assert (subscriber.lang, subscriber.frequency) == ("en", Frequency.IMMEDIATE)


async def test_answer_is_the_same_whatever_the_address_state(
    client: httpx.AsyncClient, parts: Components, clock: FakeClock, sample: list[str]
) -> None:
    await subscribed(client, parts, "pending@example.org", SubscriberState.PENDING)
    await subscribed(client, parts, "confirmed@example.org", SubscriberState.CONFIRMED)
    await subscribed(client, parts, "gone@example.org", SubscriberState.UNSUBSCRIBED)
    answers = {
        email: await post_form(client, email, topics=("awards",))
        for email in ("new@example.org", "pending@example.org", "confirmed@example.org", "gone@example.org")
    }
    statuses = {email: r.status_code for email, r in answers.items()}
    assert set(statuses.values()) == {200}, statuses
    bodies = {r.content for r in answers.values()}
    assert len(bodies) == 1
    assert len({tuple(sorted(r.headers.items())) for r in answers.values()}) == 1
    assert b"@example.org" not in bodies.pop()
    # A confirmed subscriber's choices cannot be changed by someone who only knows the address.
    assert (await stored(parts, "confirmed@example.org")).topics == ()


async def test_concurrent_requests_for_one_new_address_all_get_the_answer(
    client: httpx.AsyncClient, parts: Components, clock: FakeClock
) -> None:
    """A double-clicked submit button: every request gets the page, one mail is queued."""
    answers = await asyncio.gather(*(post_form(client, "race@example.org") for _ in range(4)))
    assert [r.status_code for r in answers] == [200] * 4
    assert (await stored(parts, "race@example.org")).state is SubscriberState.PENDING
    assert await queued(parts, clock) == 1


@pytest.mark.parametrize(
    ("email", "message"),
    [
        ("", "Enter your email address."),
        ("not-an-address", "Enter a valid email address"),
        ("someone@", "Enter a valid email address"),
        ("a@b@example.org", "Enter a valid email address"),
        ("x@example.org\r\nBcc: victim@example.org", "Enter a valid email address"),
    ],
)
async def test_invalid_address_is_422_with_the_form_again_and_nothing_stored(
    client: httpx.AsyncClient,
    parts: Components,
    clock: FakeClock,
    sample: list[str],
    email: str,
    message: str,
) -> None:
    response = await post_form(client, email, topics=("awards",), lang="fr", frequency="daily")
    assert response.status_code == 422
    assert response.headers["content-type"] == HTML
    page = read_html(response.text)
    assert message in page.text["p"]
    field = next(a for a in page.attrs("input") if a.get("name") == "email")
    assert field["aria-invalid"] == "true"
    assert field["aria-describedby"] == "email-error"
    assert typed_email(response.text) == email  # what was typed is kept ...
    assert checked(response.text, "checkbox") == {"awards": True, "research": False}  # ... every choice too
    assert selected_language(response.text) == ["fr"]
    assert checked(response.text, "radio")["daily"] is True
    assert "#email" in page.hrefs("#")
    assert sum((await parts.subscribers.counts()).values()) == 0
    assert await queued(parts, clock) == 0


async def test_hostile_address_is_escaped_when_the_form_comes_back(
    client: httpx.AsyncClient, parts: Components, sample: list[str]
) -> None:
    hostile = '"><script>alert(1)</script><img src=x onerror=alert(2)>@example.org'
    response = await post_form(client, hostile)
    assert response.status_code == 422
    assert "<script>alert(1)" not in response.text
    assert "<img src=x" not in response.text
    page = read_html(response.text)
    assert active_content(page) == []
    assert typed_email(response.text) == hostile


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("topics", "<b>nosuchtopic</b>", "Unknown topic"),
        ("lang", "xx", "Choose a language"),
        ("frequency", "hourly", "Choose how often"),
    ],
)
async def test_unknown_choice_is_422_naming_the_field(
    client: httpx.AsyncClient,
    parts: Components,
    sample: list[str],
    field: str,
    value: str,
    message: str,
) -> None:
    response = await client.post("/subscribe", data={"email": "ok@example.org", field: value})
    assert response.status_code == 422
    page = read_html(response.text)
    assert f"#{field}" in page.hrefs("#")
    assert message in response.text
    assert "<b>nosuchtopic</b>" not in response.text
    assert await parts.subscribers.find("ok@example.org") is None


# --- the JSON API --------------------------------------------------------------------------------


async def test_api_accepts_with_202_and_the_same_answer_for_every_state(
    client: httpx.AsyncClient, parts: Components, clock: FakeClock, sample: list[str]
) -> None:
    await subscribed(client, parts, "confirmed@example.org", SubscriberState.CONFIRMED)
    await subscribed(client, parts, "gone@example.org", SubscriberState.UNSUBSCRIBED)
    before = await queued(parts, clock)
    request = {"email": "New@Example.org", "topics": ["research"], "lang": "fr", "frequency": "daily"}
    first = await client.post("/api/subscriptions", json=request)
    assert first.status_code == 202
    assert first.json() == {"status": "pending_confirmation", "message": first.json()["message"]}
    assert "confirmation" in first.json()["message"]
    assert first.headers["cache-control"] == "no-store"
    subscriber = await stored(parts, "new@example.org")
    assert subscriber.state is SubscriberState.PENDING
    assert (subscriber.topics, subscriber.lang, subscriber.frequency) == (("research",), "fr", "daily")
    assert (subscriber.consent.method, subscriber.consent.source) == ("api", f"{BASE_URL}/api/subscriptions")
    assert await queued(parts, clock) == before + 1
    for email in ("new@example.org", "confirmed@example.org", "gone@example.org"):
        again = await client.post("/api/subscriptions", json={"email": email})
        assert (again.status_code, again.content) == (202, first.content)


async def test_api_defaults_are_every_topic_the_site_language_and_immediate(
    client: httpx.AsyncClient, parts: Components
) -> None:
    assert (await client.post("/api/subscriptions", json={"email": "min@example.org"})).status_code == 202
    subscriber = await stored(parts, "min@example.org")
    assert (subscriber.topics, subscriber.lang, subscriber.frequency) == ((), "en", Frequency.IMMEDIATE)


@pytest.mark.parametrize(
    ("request_body", "field", "words"),
    [
        ({"email": "not-an-address"}, "email", "not a valid email address"),
        ({"email": ""}, "email", "not a valid email address"),
        ({}, "email", "required"),
        ({"email": "a@example.org", "topics": ["nosuchtopic"]}, "topics", "unknown topic"),
        ({"email": "a@example.org", "lang": "xx"}, "lang", "unknown language"),
        ({"email": "a@example.org", "frequency": "hourly"}, "frequency", "immediate"),
        ({"email": "a@example.org", "topic": ["research"]}, "topic", "not permitted"),
    ],
)
async def test_api_invalid_input_is_422_naming_the_field(
    client: httpx.AsyncClient,
    parts: Components,
    sample: list[str],
    request_body: dict[str, object],
    field: str,
    words: str,
) -> None:
    response = await client.post("/api/subscriptions", json=request_body)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", field]
    assert words in error["msg"].lower()
    assert sum((await parts.subscribers.counts()).values()) == 0


async def test_openapi_documents_the_subscription_api(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    operation = schema["paths"]["/api/subscriptions"]["post"]
    assert operation["tags"] == ["subscriptions"]
    assert {"202", "422", "429"} <= set(operation["responses"])
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    request = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(request["properties"]) == {"email", "topics", "lang", "frequency"}
    assert request["required"] == ["email"]
    answer = operation["responses"]["202"]["content"]["application/json"]["schema"]["$ref"]
    answer_schema = schema["components"]["schemas"][answer.rsplit("/", 1)[1]]
    assert set(answer_schema["properties"]) == {"status", "message"}
    # The HTML pages and their tokens stay out of the schema.
    pages = ("/subscribe", "/confirm", "/unsubscribe", "/preferences")
    assert not [path for path in schema["paths"] if path.startswith(pages)]


# --- rate limit ----------------------------------------------------------------------------------


async def test_rate_limit_per_client_with_retry_after_then_recovers(
    start_service: StartService, clock: FakeClock
) -> None:
    service = await start_service(subscribe_rate_limit=3)
    app = make_app(service.parts)
    async with client_at(app, "198.51.100.7") as one, client_at(app, "198.51.100.8") as other:
        assert (await post_form(one, "a@example.org")).status_code == 200
        clock.advance(seconds=20)
        assert (await one.post("/api/subscriptions", json={"email": "b@example.org"})).status_code == 202
        assert (await post_form(one, "not an address")).status_code == 422  # counts too
        limited = await post_form(one, "c@example.org")
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "40"  # the first request leaves the window then
        assert limited.headers["cache-control"] == "no-store"
        assert "try again in 40 seconds" in limited.text
        assert typed_email(limited.text) == "c@example.org"
        api = await one.post("/api/subscriptions", json={"email": "c@example.org"})
        assert api.status_code == 429
        assert int(api.headers["retry-after"]) == 40
        assert "retry in 40 seconds" in api.json()["detail"]
        assert await service.parts.subscribers.find("c@example.org") is None
        assert (await post_form(other, "d@example.org")).status_code == 200  # another client

        clock.advance(seconds=40)  # the first request is a minute old: one slot frees
        assert (await post_form(one, "c@example.org")).status_code == 200
        assert (await post_form(one, "e@example.org")).status_code == 429
        clock.advance(seconds=60)
        for n in range(3):
            assert (await post_form(one, f"f{n}@example.org")).status_code == 200
        assert (await post_form(one, "g@example.org")).status_code == 429


def test_rate_limiter_forgets_idle_clients_and_stays_bounded() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, timedelta(minutes=1), clock, max_clients=3)
    assert [limiter.hit("a"), limiter.hit("a"), limiter.hit("a")] == [None, None, 60]
    limiter.hit("b")
    clock.advance(seconds=61)
    limiter.hit("c")
    assert len(limiter) == 1  # a and b were idle for a whole window
    for client in ("d", "e", "f"):
        assert limiter.hit(client) is None
    assert len(limiter) == 3  # at most max_clients: the least recently seen (c) is forgotten
    assert limiter.hit("f") is None
    assert limiter.hit("f") == 60


# --- confirm -------------------------------------------------------------------------------------


async def test_confirm_link_confirms_and_a_second_click_is_fine(
    client: httpx.AsyncClient, parts: Components, clock: FakeClock
) -> None:
    pending = await subscribed(client, parts, "jane@example.org", SubscriberState.PENDING)
    token = confirm_token(parts, pending)
    clock.advance(minutes=3)
    response = await client.get(f"/confirm/{token}")
    assert response.status_code == 200
    assert "You are subscribed" in response.text
    confirmed = await stored(parts, "jane@example.org")
    assert confirmed.state is SubscriberState.CONFIRMED
    assert confirmed.confirmed_at == clock.now()
    (link,) = read_html(response.text).hrefs("/preferences/")
    assert parts.tokens.read(Purpose.PREFERENCES, link.removeprefix("/preferences/")) == (pending.id, 0)
    assert (await client.get(link)).status_code == 200

    clock.advance(hours=1)
    again = await client.get(f"/confirm/{token}")
    assert again.status_code == 200
    assert "You are subscribed" in again.text
    assert (await stored(parts, "jane@example.org")).confirmed_at == confirmed.confirmed_at


async def test_head_does_not_confirm(client: httpx.AsyncClient, parts: Components) -> None:
    pending = await subscribed(client, parts, "jane@example.org", SubscriberState.PENDING)
    await client.head(f"/confirm/{confirm_token(parts, pending)}")
    assert (await stored(parts, "jane@example.org")).state is SubscriberState.PENDING


async def test_tokens_are_bound_to_their_purpose(client: httpx.AsyncClient, parts: Components) -> None:
    pending = await subscribed(client, parts, "jane@example.org", SubscriberState.PENDING)
    confirm = confirm_token(parts, pending)
    unsubscribe = parts.tokens.make(Purpose.UNSUBSCRIBE, pending.id)
    preferences = parts.tokens.make(Purpose.PREFERENCES, pending.id)
    assert (await client.get(f"/unsubscribe/{confirm}")).status_code == 400
    assert (await client.post(f"/unsubscribe/{confirm}", data=ONE_CLICK)).status_code == 400
    assert (await client.post(f"/unsubscribe/{preferences}", data=ONE_CLICK)).status_code == 400
    assert (await client.get(f"/confirm/{unsubscribe}")).status_code == 400
    assert (await client.get(f"/confirm/{preferences}")).status_code == 400
    assert (await client.get(f"/preferences/{confirm}")).status_code == 400
    assert (await stored(parts, "jane@example.org")).state is SubscriberState.PENDING


async def test_expired_confirm_link_is_400_and_offers_to_subscribe_again(
    client: httpx.AsyncClient, parts: Components, monkeypatch: pytest.MonkeyPatch
) -> None:
    pending = await subscribed(client, parts, "jane@example.org", SubscriberState.PENDING)
    lifetime = timedelta(hours=parts.settings.confirm_token_hours)
    tokens = {}
    # itsdangerous stamps tokens with the real time: sign these as if it were days ago.
    for age in (lifetime - timedelta(hours=1), lifetime + timedelta(hours=1)):
        with monkeypatch.context() as patch:
            then = int(time.time() - age.total_seconds())
            patch.setattr(TimestampSigner, "get_timestamp", lambda _, then=then: then)
            tokens[age > lifetime] = confirm_token(parts, pending)
    response = await client.get(f"/confirm/{tokens[True]}")
    assert response.status_code == 400
    assert "invalid or has expired" in response.text
    assert "/subscribe" in read_html(response.text).hrefs()
    assert response.headers["cache-control"] == "no-store"
    assert (await stored(parts, "jane@example.org")).state is SubscriberState.PENDING
    assert (await client.get(f"/confirm/{tokens[False]}")).status_code == 200  # still within its life


async def test_confirm_link_from_before_an_unsubscribe_no_longer_confirms(
    client: httpx.AsyncClient, parts: Components, clock: FakeClock
) -> None:
    first = await subscribed(client, parts, "jane@example.org", SubscriberState.PENDING)
    old = confirm_token(parts, first)
    await client.get(f"/confirm/{old}")
    await client.post(f"/unsubscribe/{parts.tokens.make(Purpose.UNSUBSCRIBE, first.id)}", data=ONE_CLICK)
    clock.advance(hours=2)  # past the confirmation window: a new mail is due
    assert (await post_form(client, "jane@example.org")).status_code == 200
    renewed = await stored(parts, "jane@example.org")
    assert (renewed.state, renewed.generation) == (SubscriberState.PENDING, first.generation + 1)
    response = await client.get(f"/confirm/{old}")
    assert response.status_code == 400
    assert (await stored(parts, "jane@example.org")).state is SubscriberState.PENDING
    assert (await client.get(f"/confirm/{confirm_token(parts, renewed)}")).status_code == 200
    assert (await stored(parts, "jane@example.org")).state is SubscriberState.CONFIRMED


@pytest.mark.parametrize("purpose", list(Purpose))
async def test_forged_links_are_400(client: httpx.AsyncClient, parts: Components, purpose: Purpose) -> None:
    pending = await subscribed(client, parts, "jane@example.org", SubscriberState.PENDING)
    genuine = parts.tokens.make(purpose, pending.id, pending.generation)
    forged = [
        "garbage",
        # The payload, not the signature's last character: its low bits are base64 padding.
        ("B" if genuine[0] != "B" else "C") + genuine[1:],
        Tokens("another secret").make(purpose, pending.id, pending.generation),
        "x" * 5000,
    ]
    key = csrf_key(load_or_create_secret(parts.settings.data_dir / "secret_key"))
    for token in forged:
        url = f"/{purpose.value}/{token}"
        response = await client.get(url)
        assert (response.status_code, "invalid" in response.text) == (400, True), token
        if purpose is Purpose.UNSUBSCRIBE:
            assert (await client.post(url, data=ONE_CLICK)).status_code == 400
        if purpose is Purpose.PREFERENCES and len(token) < 1000:  # even with a CSRF value made for it
            data = {"csrf": csrf_value(key, token), "lang": "en", "frequency": "daily"}
            assert (await client.post(url, data=data)).status_code == 400
    assert await stored(parts, "jane@example.org") == pending


# --- unsubscribe ---------------------------------------------------------------------------------


async def test_unsubscribe_page_shows_a_button_and_never_changes_state(
    client: httpx.AsyncClient, parts: Components
) -> None:
    subscriber = await subscribed(client, parts, "jane@example.org", SubscriberState.CONFIRMED)
    token = parts.tokens.make(Purpose.UNSUBSCRIBE, subscriber.id)
    for _ in range(2):
        response = await client.get(f"/unsubscribe/{token}")
        assert response.status_code == 200
        await client.head(f"/unsubscribe/{token}")
    page = read_html(response.text)
    (form,) = page.attrs("form")
    assert (form["method"], form["action"]) == ("post", f"/unsubscribe/{token}")
    assert page.text["button"].strip() == "Unsubscribe"
    assert (await stored(parts, "jane@example.org")).state is SubscriberState.CONFIRMED


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
async def test_one_click_unsubscribe_is_idempotent_with_no_redirect(
    client: httpx.AsyncClient, parts: Components, clock: FakeClock, encoding: str
) -> None:
    subscriber = await subscribed(client, parts, "jane@example.org", SubscriberState.CONFIRMED)
    url = f"/unsubscribe/{parts.tokens.make(Purpose.UNSUBSCRIBE, subscriber.id)}"
    client.cookies.clear()

    async def one_click() -> httpx.Response:
        if encoding == "multipart":
            response = await client.post(url, files={"List-Unsubscribe": (None, "One-Click")})
            assert response.request.headers["content-type"].startswith("multipart/form-data")
            return response
        return await client.post(url, data=ONE_CLICK)

    clock.advance(minutes=1)
    first = await one_click()
    assert first.status_code == 200
    assert "location" not in first.headers
    assert "You are unsubscribed" in first.text
    gone = await stored(parts, "jane@example.org")
    assert (gone.state, gone.unsubscribed_at) == (SubscriberState.UNSUBSCRIBED, clock.now())
    clock.advance(minutes=1)
    second = await one_click()
    assert (second.status_code, second.content) == (200, first.content)
    assert (await stored(parts, "jane@example.org")).unsubscribed_at == gone.unsubscribed_at
    page = await client.get(url)
    assert (page.status_code, "You are unsubscribed" in page.text) == (200, True)


async def test_unsubscribe_button_on_the_page_works(client: httpx.AsyncClient, parts: Components) -> None:
    subscriber = await subscribed(client, parts, "jane@example.org", SubscriberState.PENDING)
    token = parts.tokens.make(Purpose.UNSUBSCRIBE, subscriber.id)
    page = read_html((await client.get(f"/unsubscribe/{token}")).text)
    (form,) = page.attrs("form")
    fields = {str(a["name"]): str(a["value"]) for a in page.attrs("input") if a.get("type") == "hidden"}
    response = await client.post(str(form["action"]), data=fields)
    assert response.status_code == 200
    assert (await stored(parts, "jane@example.org")).state is SubscriberState.UNSUBSCRIBED


# --- preferences ---------------------------------------------------------------------------------


@pytest.fixture
async def member(client: httpx.AsyncClient, parts: Components, sample: list[str]) -> tuple[Subscriber, str]:
    """A confirmed subscriber (research, French, weekly) and their preferences token."""
    await post_form(client, "jane@example.org", topics=("research",), lang="fr", frequency="weekly")
    pending = await stored(parts, "jane@example.org")
    await client.get(f"/confirm/{confirm_token(parts, pending)}")
    subscriber = await stored(parts, "jane@example.org")
    assert subscriber.state is SubscriberState.CONFIRMED
    return subscriber, parts.tokens.make(Purpose.PREFERENCES, subscriber.id)


async def test_preferences_page_shows_the_current_choices(
    client: httpx.AsyncClient, member: tuple[Subscriber, str]
) -> None:
    _, token = member
    response = await client.get(f"/preferences/{token}")
    assert response.status_code == 200
    assert checked(response.text, "checkbox") == {"awards": False, "research": True}
    assert selected_language(response.text) == ["fr"]
    assert checked(response.text, "radio") == {"immediate": False, "daily": False, "weekly": True}
    (form,) = read_html(response.text).attrs("form")
    assert (form["method"], form["action"]) == ("post", f"/preferences/{token}")
    assert len((await preferences_form(client, token))["csrf"]) == 64


async def test_preferences_post_with_csrf_updates_the_choices(
    client: httpx.AsyncClient, parts: Components, member: tuple[Subscriber, str]
) -> None:
    _, token = member
    hidden = await preferences_form(client, token)
    data = {**hidden, "topics": ["awards"], "lang": "en", "frequency": "daily"}
    headers = {"Origin": "HTTPS://Press.Example.org:443"}  # the site's own origin, however spelled
    response = await client.post(f"/preferences/{token}", data=data, headers=headers)
    assert response.status_code == 200
    assert "Your preferences are saved." in response.text
    assert checked(response.text, "checkbox") == {"awards": True, "research": False}
    updated = await stored(parts, "jane@example.org")
    assert (updated.topics, updated.lang, updated.frequency) == (("awards",), "en", Frequency.DAILY)
    assert updated.state is SubscriberState.CONFIRMED
    # No box ticked: every topic. Same-origin fetch metadata is fine.
    data = {**hidden, "lang": "en", "frequency": "weekly"}
    headers = {"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"}
    assert (await client.post(f"/preferences/{token}", data=data, headers=headers)).status_code == 200
    assert (await stored(parts, "jane@example.org")).topics == ()
    # What a real browser sends for a form on a page a proxy served with `Referrer-Policy: no-referrer`.
    headers = {"Sec-Fetch-Site": "same-origin", "Origin": "null"}
    assert (await client.post(f"/preferences/{token}", data=data, headers=headers)).status_code == 200


async def test_preferences_post_with_an_unknown_choice_is_422(
    client: httpx.AsyncClient, parts: Components, member: tuple[Subscriber, str]
) -> None:
    subscriber, token = member
    hidden = await preferences_form(client, token)
    data = {**hidden, "topics": ["nosuchtopic"], "lang": "xx", "frequency": "daily"}
    response = await client.post(f"/preferences/{token}", data=data)
    assert response.status_code == 422
    assert {"#topics", "#lang"} <= set(read_html(response.text).hrefs("#"))
    assert await stored(parts, "jane@example.org") == subscriber


@pytest.mark.parametrize("csrf", [None, "", "wrong", "tampered", "ünïcode"])
async def test_preferences_post_without_the_right_csrf_is_403(
    client: httpx.AsyncClient, parts: Components, member: tuple[Subscriber, str], csrf: str | None
) -> None:
    subscriber, token = member
    data: dict[str, str] = {"topics": "awards", "lang": "en", "frequency": "daily"}
    if csrf == "tampered":
        genuine = (await preferences_form(client, token))["csrf"]
        data["csrf"] = genuine[:-1] + ("0" if genuine[-1] != "0" else "1")
    elif csrf is not None:
        data["csrf"] = csrf
    response = await client.post(f"/preferences/{token}", data=data)
    assert response.status_code == 403
    assert response.headers["cache-control"] == "no-store"
    assert await stored(parts, "jane@example.org") == subscriber


async def test_csrf_value_is_bound_to_its_own_link(
    client: httpx.AsyncClient, parts: Components, member: tuple[Subscriber, str]
) -> None:
    subscriber, token = member
    await post_form(client, "other@example.org")
    other = await stored(parts, "other@example.org")
    await client.get(f"/confirm/{confirm_token(parts, other)}")
    other_token = parts.tokens.make(Purpose.PREFERENCES, other.id)
    stolen = await preferences_form(client, other_token)
    data = {**stolen, "lang": "en", "frequency": "daily"}
    assert (await client.post(f"/preferences/{token}", data=data)).status_code == 403
    assert await stored(parts, "jane@example.org") == subscriber


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "https://press.example.org.evil.example"},
        {"Origin": "https://press.example.org:notaport"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site", "Origin": BASE_URL},
    ],
)
async def test_cross_site_preferences_post_is_403(
    client: httpx.AsyncClient, parts: Components, member: tuple[Subscriber, str], headers: dict[str, str]
) -> None:
    subscriber, token = member
    data = {**(await preferences_form(client, token)), "lang": "en", "frequency": "daily"}
    response = await client.post(f"/preferences/{token}", data=data, headers=headers)
    assert response.status_code == 403
    assert "not saved" in response.text
    assert await stored(parts, "jane@example.org") == subscriber


@pytest.mark.parametrize("state", [SubscriberState.UNSUBSCRIBED, SubscriberState.BOUNCED])
async def test_suppressed_subscriber_is_told_they_are_not_subscribed(
    client: httpx.AsyncClient,
    parts: Components,
    clock: FakeClock,
    member: tuple[Subscriber, str],
    state: SubscriberState,
) -> None:
    subscriber, token = member
    hidden = await preferences_form(client, token)
    if state is SubscriberState.BOUNCED:
        assert await parts.subscribers.bounce(subscriber.id, clock.now())
    else:
        unsubscribe = parts.tokens.make(Purpose.UNSUBSCRIBE, subscriber.id)
        assert (await client.post(f"/unsubscribe/{unsubscribe}", data=ONE_CLICK)).status_code == 200
    response = await client.get(f"/preferences/{token}")
    assert response.status_code == 200
    assert "You are not subscribed" in response.text
    assert "/subscribe" in read_html(response.text).hrefs()
    assert read_html(response.text).attrs("form") == []
    post = await client.post(f"/preferences/{token}", data={**hidden, "lang": "en", "frequency": "daily"})
    assert post.status_code == 409
    assert "You are not subscribed" in post.text
    gone = await stored(parts, "jane@example.org")
    assert (gone.state, gone.lang, gone.frequency) == (state, "fr", Frequency.WEEKLY)


# --- privacy -------------------------------------------------------------------------------------


def base64_forms(text: str) -> set[str]:
    """Substrings any base64 encoding of a string containing `text` would contain, at every alignment."""
    forms = set()
    for pad in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * pad + text.encode()).decode().rstrip("=")
            # Drop the characters that mix in neighbouring bytes.
            forms.add(encoded[(pad * 4 + 2) // 3 + 1 : -2])
    return {f for f in forms if len(f) >= 4}


async def test_tokens_carry_no_plaintext_address(client: httpx.AsyncClient, parts: Components) -> None:
    email = "distinctive.local.part@example.org"
    subscriber = await subscribed(client, parts, email, SubscriberState.PENDING)
    local = email.split("@")[0]
    confirm_page = await client.get(f"/confirm/{confirm_token(parts, subscriber)}")
    (preferences_link,) = read_html(confirm_page.text).hrefs("/preferences/")
    tokens = [
        *(parts.tokens.make(p, subscriber.id, subscriber.generation) for p in Purpose),
        preferences_link.removeprefix("/preferences/"),
    ]
    for token in tokens:
        assert local not in token.lower()
        for needle in base64_forms(local):
            assert needle not in token, (needle, token)
        payload = token.split(".")[0]
        decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        assert json.loads(decoded)[0] == subscriber.id  # an id and a generation, nothing else
        assert len(json.loads(decoded)) == 2
    assert local not in confirm_page.text


async def test_every_subscription_page_is_private(
    client: httpx.AsyncClient, parts: Components, member: tuple[Subscriber, str]
) -> None:
    subscriber, token = member
    unsubscribe = parts.tokens.make(Purpose.UNSUBSCRIBE, subscriber.id)
    hidden = await preferences_form(client, token)
    responses = [
        await client.get("/subscribe"),
        await post_form(client, "new@example.org"),
        await post_form(client, "bad"),
        await client.post("/api/subscriptions", json={"email": "api@example.org"}),
        await client.get(f"/confirm/{confirm_token(parts, subscriber)}"),
        await client.get("/confirm/forged"),
        await client.get(f"/preferences/{token}"),
        await client.post(f"/preferences/{token}", data={**hidden, "lang": "en", "frequency": "daily"}),
        await client.post(f"/preferences/{token}", data={"lang": "en"}),
        await client.get("/preferences/forged"),
        await client.get(f"/unsubscribe/{unsubscribe}"),
        await client.post(f"/unsubscribe/{unsubscribe}", data=ONE_CLICK),
        await client.post("/unsubscribe/forged", data=ONE_CLICK),
    ]
    for response in responses:
        headers = {k: response.headers.get(k) for k in PRIVATE}
        assert headers == PRIVATE, (response.request.url.path[:20], response.status_code)
    for response in responses:
        if response.headers["content-type"] == HTML:
            page = read_html(response.text)
            assert active_content(page) == []
            # Nothing is fetched from elsewhere, and no token is offered as a canonical URL.
            assert not [attrs for _, attrs in page.elements if "src" in attrs]
            canonical = [str(a["href"]) for a in page.attrs("link") if a.get("rel") == "canonical"]
            assert canonical in ([], [f"{BASE_URL}/subscribe"])


async def test_no_token_or_address_is_logged(
    client: httpx.AsyncClient, parts: Components, caplog: pytest.LogCaptureFixture, sample: list[str]
) -> None:
    email = "logged.never@example.org"
    with caplog.at_level(logging.DEBUG):
        subscriber = await subscribed(client, parts, email, SubscriberState.UNSUBSCRIBED)
        preferences = parts.tokens.make(Purpose.PREFERENCES, subscriber.id)
        await client.get(f"/preferences/{preferences}")
        await client.get("/confirm/forged-token-value")
    tokens = [
        confirm_token(parts, subscriber),
        parts.tokens.make(Purpose.UNSUBSCRIBE, subscriber.id),
        preferences,
        "forged-token-value",
    ]
    # httpx (the test's own client) logs the URLs it requests; aiosqlite's DEBUG lines carry SQL
    # parameters (see test_debug_logging_keeps_sql_parameters_out below). The service's own must not.
    ours = ("service", "uvicorn", "starlette", "fastapi")
    service_records = [r for r in caplog.records if r.name.split(".")[0] in ours]
    assert any(r.name.startswith("service.web") for r in service_records)
    logged = "\n".join(f"{r.getMessage()} {vars(r)}" for r in service_records)
    for secret in (*tokens, email, email.split("@")[0]):
        assert secret not in logged


# --- regressions: problems found in other modules, now fixed ------------------------------------


async def test_resubscribing_soon_after_unsubscribing_sends_a_new_confirmation(
    client: httpx.AsyncClient, parts: Components, clock: FakeClock
) -> None:
    await subscribed(client, parts, "jane@example.org", SubscriberState.UNSUBSCRIBED)
    before = await queued(parts, clock)
    clock.advance(minutes=10)
    await post_form(client, "jane@example.org")
    assert (await stored(parts, "jane@example.org")).state is SubscriberState.PENDING
    assert await queued(parts, clock) == before + 1


def test_debug_logging_keeps_sql_parameters_out(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # configure_logging replaces them in place
    level = root.level
    try:
        configure_logging("DEBUG")
        assert not logging.getLogger("aiosqlite").isEnabledFor(logging.DEBUG)
    finally:
        root.setLevel(level)

"""Subscription pages and API: subscribe, confirm, unsubscribe (RFC 8058 one-click), preferences.

Every door answers alike whatever the address's state (no enumeration): the store work that differs
between a new and a known address (an insert and a queued confirmation mail, or nothing) runs after
the answer is sent, so neither the answer nor its timing tells them apart. Every page here is about
one person, and the confirm, unsubscribe and preferences pages carry that person's token in their
URL: none is cached (`Cache-Control: no-store`), none passes its URL on to another site
(`Referrer-Policy: same-origin`), and neither tokens nor addresses are logged (subscriber ids are).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Literal
from urllib.parse import urlsplit

from fastapi import BackgroundTasks, HTTPException
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.background import BackgroundTask
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from service.addresses import InvalidAddress, normalise_address
from service.audience import Preferences
from service.models import Consent, Frequency, Subscriber, SubscriberState
from service.render.environment import LANGUAGES, language_name
from service.render.pages import Choices
from service.tokens import Purpose
from service.views import HTML
from service.web.ratelimit import RateLimiter
from service.web.routes import WebDeps

log = logging.getLogger(__name__)

PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "same-origin"}
FORM_PATH = "/subscribe"
API_PATH = "/api/subscriptions"
RATE_WINDOW = timedelta(minutes=1)
MAX_TOPICS = 100
MAX_TOKEN = 1024  # far longer than any token we sign: longer ones are refused unread
ACCEPTED = (
    "If the address can receive email, a message with a confirmation link is on its way to it. "
    "Nothing else is sent until the link is followed."
)
FREQUENCY_LABELS = {
    Frequency.IMMEDIATE: "Immediately: one email per announcement",
    Frequency.DAILY: "Daily digest",
    Frequency.WEEKLY: "Weekly digest",
}
_LANGUAGE_CHOICES = tuple((code, language_name(code)) for code in LANGUAGES)
_FREQUENCY_CHOICES = tuple((f.value, FREQUENCY_LABELS.get(f, f.value)) for f in Frequency)
_FREQUENCIES = frozenset(f.value for f in Frequency)
_SUPPRESSED = (SubscriberState.UNSUBSCRIBED, SubscriberState.BOUNCED)
_CSRF_FIELD = "csrf"


# --- the JSON API's schema ------------------------------------------------------------------------


class SubscriptionRequest(BaseModel):
    """A subscription request; the address receives a confirmation link (double opt-in)."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(
        max_length=320,
        description="The address to subscribe.",
        examples=["jane@example.org"],
        json_schema_extra={"format": "email"},
    )
    topics: list[str] = Field(
        default_factory=list,
        max_length=MAX_TOPICS,
        description="Topics to receive, among those with published announcements; empty or absent: all.",
    )
    lang: str | None = Field(
        None,
        description=f"Language of the emails, one of: {', '.join(LANGUAGES)}; absent: the site's.",
        json_schema_extra={"enum": [*LANGUAGES, None]},
    )
    frequency: Frequency = Field(Frequency.IMMEDIATE, description="Each release, or a daily or weekly digest")

    @field_validator("email")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            return normalise_address(value)
        except InvalidAddress as exc:  # a ValueError: FastAPI answers 422, naming the field
            raise ValueError(f"not a valid email address: {exc}") from None

    @field_validator("lang")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        if value is not None and value not in LANGUAGES:
            raise ValueError(f"unknown language; use one of: {', '.join(LANGUAGES)}")
        return value


class SubscriptionAccepted(BaseModel):
    """The answer to every valid request, whatever the address's state (no enumeration)."""

    status: Literal["pending_confirmation"] = "pending_confirmation"
    message: str = ACCEPTED


# --- helpers --------------------------------------------------------------------------------------


def csrf_key(secret: str) -> bytes:
    """The key of the preferences form's CSRF field, derived from (never equal to) the link secret."""
    return hmac.new(secret.encode(), b"announce.web.csrf", hashlib.sha256).digest()


def csrf_value(key: bytes, token: str) -> str:
    """The hidden field a preferences form must send back: bound to its own preferences token."""
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


def default_language(site_language: str) -> str:
    """The site's language if mails exist in it (or in its primary subtag), else the first we have."""
    primary = site_language.split("-")[0].lower()
    for candidate in (site_language, primary):
        if candidate in LANGUAGES:
            return candidate
    return LANGUAGES[0]


def choice_errors(
    topics: Collection[str], lang: str, frequency: str, known: Collection[str]
) -> dict[str, str]:
    """What is wrong with a choice of topics, language and frequency, by field name."""
    errors: dict[str, str] = {}
    unknown = [t for t in topics if t not in known]
    if len(topics) > MAX_TOPICS:
        errors["topics"] = f"Choose at most {MAX_TOPICS} topics."
    elif unknown:
        names = ", ".join(repr(t[:60]) for t in unknown[:5])
        errors["topics"] = f"Unknown topic {names}: choose topics from the list."
    if lang not in LANGUAGES:
        errors["lang"] = f"Choose a language from the list ({', '.join(LANGUAGES)})."
    if frequency not in _FREQUENCIES:
        errors["frequency"] = "Choose how often: immediate, daily or weekly."
    return errors


def _page(
    body: str,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    background: BackgroundTask | None = None,
) -> Response:
    return Response(
        body,
        status_code=status,
        media_type=HTML,
        headers={**PRIVATE, **(headers or {})},
        background=background,
    )


def _too_many(wait: int) -> Response:
    # Plain text: a person follows a mail link a few times a minute at most, so whoever sees this is
    # a script (or many people behind one address, who are told when to come back).
    return PlainTextResponse(
        f"Too many requests from your connection: please try again in {wait} seconds.",
        status_code=429,
        headers={"Retry-After": str(wait), **PRIVATE},
    )


def _client(request: Request) -> str:
    # Behind a reverse proxy this is the proxy unless uvicorn trusts its X-Forwarded-For
    # (--forwarded-allow-ips); otherwise every client shares one budget.
    return request.client.host if request.client else "unknown"


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _unique(values: Iterable[object]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if isinstance(v, str) and v))


def _origin(url: str) -> str:
    """scheme://host[:port], the port only when not the scheme's default; "" if malformed."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ""
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    shown = f":{port}" if port is not None and port != {"http": 80, "https": 443}.get(scheme) else ""
    return f"{scheme}://{host}{shown}" if scheme and host else ""


def _token(request: Request) -> str:
    token = str(request.path_params["token"])
    return token if len(token) <= MAX_TOKEN else ""


# --- handlers -------------------------------------------------------------------------------------


class SubscriptionHandlers:
    """Subscription request handlers, bound to their dependencies and one rate limiter."""

    def __init__(self, deps: WebDeps) -> None:
        self.deps = deps
        # One budget per client for both doors: alternating the form and the API gains nothing.
        self.limiter = RateLimiter(deps.subscribe_rate_limit, RATE_WINDOW, deps.clock)
        # Another for the links in mail (confirm, unsubscribe, preferences: pages and posts), so that
        # a client probing tokens cannot use up anyone's subscribe budget, nor the reverse.
        self.link_limiter = RateLimiter(deps.link_rate_limit, RATE_WINDOW, deps.clock)
        self.default_lang = default_language(deps.site.language)

    def _consent(self, method: str, path: str, request: Request) -> Consent:
        return Consent(method, self.deps.site.url(path), self.deps.clock.now(), _client(request))

    async def _known_topics(self) -> list[str]:
        return await self.deps.views.topics()

    def _link_limited(self, request: Request) -> Response | None:
        wait = self.link_limiter.hit(_client(request))
        return None if wait is None else _too_many(wait)

    async def _record_request(self, address: str, prefs: Preferences, consent: Consent, door: str) -> None:
        """Store a subscription request once its answer is sent (see the module docstring)."""
        try:
            result = await self.deps.audience.subscribe(address, prefs, consent)
        except Exception as exc:
            # The answer is gone already; the exception's text may quote the address (SQL parameters).
            log.error("subscription request failed", extra={"door": door, "error": type(exc).__name__})
            return
        log.info(
            "subscription requested",
            extra={"subscriber": result.subscriber.id, "outcome": result.outcome.value, "door": door},
        )

    # --- subscribe: the form -----------------------------------------------------------------------

    def _form_page(
        self, email: str, known: list[str], topics: Collection[str], lang: str, frequency: str,
        errors: Mapping[str, str],
    ) -> str:  # fmt: skip
        return self.deps.pages.subscribe(email, _choices(known, topics, lang, frequency, errors))

    async def subscribe_form(self, _: Request) -> Response:
        """GET /subscribe: the empty form."""
        known = await self._known_topics()
        return _page(self._form_page("", known, (), self.default_lang, Frequency.IMMEDIATE, {}))

    async def subscribe(self, request: Request) -> Response:
        """POST /subscribe: the same "check your inbox" page whatever the address's state."""
        wait = self.limiter.hit(_client(request))
        form = await request.form(max_files=0, max_fields=MAX_TOPICS + 10)
        email = _text(form, "email")
        topics = _unique(form.getlist("topics"))
        lang = _text(form, "lang") or self.default_lang
        frequency = _text(form, "frequency") or Frequency.IMMEDIATE
        known = await self._known_topics()
        if wait is not None:
            message = f"Too many requests from your connection: please try again in {wait} seconds."
            body = self._form_page(email, known, topics, lang, frequency, {"form": message})
            return _page(body, 429, {"Retry-After": str(wait)})
        errors = choice_errors(topics, lang, frequency, known)
        try:
            address = normalise_address(email)
        except InvalidAddress as exc:
            reason = f"Enter a valid email address: {exc}" if email.strip() else "Enter your email address."
            errors = {"email": reason, **errors}
        if errors:
            return _page(self._form_page(email, known, topics, lang, frequency, errors), 422)
        prefs = Preferences(tuple(sorted(topics)), lang, Frequency(frequency))
        consent = self._consent("web", FORM_PATH, request)
        record = BackgroundTask(self._record_request, address, prefs, consent, "web")
        return _page(self.deps.pages.subscribed(), background=record)

    # --- subscribe: the API ------------------------------------------------------------------------

    async def api_rate_limit(self, request: Request) -> None:
        """Dependency of POST /api/subscriptions: counts every attempt, valid or not."""
        wait = self.limiter.hit(_client(request))
        if wait is not None:
            raise HTTPException(
                429,
                f"Too many subscription requests from this client: retry in {wait} seconds.",
                headers={"Retry-After": str(wait), **PRIVATE},
            )

    async def api_subscribe(
        self, request: Request, body: SubscriptionRequest, response: Response, background: BackgroundTasks
    ) -> SubscriptionAccepted:
        """Request a subscription. The answer is the same for every address: follow the link it receives.

        Topics must be among those with published announcements. At most
        `subscribe_rate_limit` requests per client per minute (429 with Retry-After beyond); bodies
        over `max_request_bytes` are refused (413).
        """
        known = await self._known_topics()
        topics = _unique(body.topics)
        unknown = [t for t in topics if t not in known]
        if unknown:
            listed = ", ".join(known) or "none yet"
            raise RequestValidationError(
                [
                    {
                        "type": "value_error",
                        "loc": ("body", "topics"),
                        "msg": f"unknown topic(s): {', '.join(unknown[:5])}; topics are: {listed}",
                        "input": body.topics,
                    }
                ]
            )
        prefs = Preferences(tuple(sorted(topics)), body.lang or self.default_lang, body.frequency)
        consent = self._consent("api", API_PATH, request)
        background.add_task(self._record_request, body.email, prefs, consent, "api")
        response.headers.update(PRIVATE)
        return SubscriptionAccepted()

    # --- confirm -----------------------------------------------------------------------------------

    async def confirm(self, request: Request) -> Response:
        """GET /confirm/{token}: confirm (idempotent) and offer the preferences link.

        Decision: a GET confirms, because the link is followed from a mail client and a second
        "click to confirm" page loses people. The cost: a mail scanner that fetches every link
        also confirms; the confirmation still proves the mailbox received the link. HEAD is not
        routed, so link checkers that probe with HEAD confirm nothing.
        """
        if (limited := self._link_limited(request)) is not None:
            return limited
        subscriber = await self.deps.audience.confirm(_token(request))
        if subscriber is None:
            return _page(self.deps.pages.confirm(None), 400)
        log.info("subscription confirmed", extra={"subscriber": subscriber.id})
        preferences = f"/preferences/{self.deps.tokens.make(Purpose.PREFERENCES, subscriber.id)}"
        return _page(self.deps.pages.confirm(preferences))

    # --- unsubscribe -------------------------------------------------------------------------------

    async def unsubscribe_page(self, request: Request) -> Response:
        """GET /unsubscribe/{token}: a page with one button; showing it never changes anything."""
        if (limited := self._link_limited(request)) is not None:
            return limited
        token = _token(request)
        subscriber = await self.deps.audience.holder(Purpose.UNSUBSCRIBE, token)
        if subscriber is None:
            return _page(self.deps.pages.unsubscribe("invalid", ""), 400)
        state = "done" if subscriber.state in _SUPPRESSED else "ask"
        return _page(self.deps.pages.unsubscribe(state, f"/unsubscribe/{token}"))

    async def unsubscribe(self, request: Request) -> Response:
        """POST /unsubscribe/{token}: RFC 8058 one-click, or the page's button; idempotent.

        The token is the authorisation, so the body is not read: mail providers send
        `List-Unsubscribe=One-Click` urlencoded or as multipart, and neither may fail to count.
        No cookie, no CSRF field, no redirect: a 200 page is the answer either way.
        """
        if (limited := self._link_limited(request)) is not None:
            return limited
        token = _token(request)
        subscriber = await self.deps.audience.unsubscribe(token)
        if subscriber is None:
            return _page(self.deps.pages.unsubscribe("invalid", ""), 400)
        log.info("unsubscribed", extra={"subscriber": subscriber.id})
        return _page(self.deps.pages.unsubscribe("done", f"/unsubscribe/{token}"))

    # --- preferences -------------------------------------------------------------------------------

    def _preferences_page(
        self, token: str, subscriber: Subscriber, known: list[str], *, topics: Collection[str],
        lang: str, frequency: str, errors: Mapping[str, str] | None = None, saved: bool = False,
    ) -> str:  # fmt: skip
        return self.deps.pages.preferences(
            "saved" if saved else "form",
            action=f"/preferences/{token}",
            csrf=csrf_value(self.deps.csrf_secret, token),
            choices=_choices(sorted({*known, *subscriber.topics}), topics, lang, frequency, errors),
        )

    async def preferences_page(self, request: Request) -> Response:
        """GET /preferences/{token}: the form, filled in with the current choices."""
        if (limited := self._link_limited(request)) is not None:
            return limited
        token = _token(request)
        subscriber = await self.deps.audience.holder(Purpose.PREFERENCES, token)
        if subscriber is None:
            return _page(self.deps.pages.preferences("invalid"), 400)
        if subscriber.state is not SubscriberState.CONFIRMED:
            return _page(self.deps.pages.preferences("not_subscribed"))
        body = self._preferences_page(
            token, subscriber, await self._known_topics(),
            topics=subscriber.topics, lang=subscriber.lang, frequency=subscriber.frequency,
        )  # fmt: skip
        return _page(body)

    def _same_origin(self, request: Request) -> bool:
        """False for a form posted from another site (when the browser says where it came from)."""
        fetch_site = request.headers.get("sec-fetch-site")
        # The browser's own word, trusted over Origin: a page served with `Referrer-Policy:
        # no-referrer` (a proxy may add it) makes browsers post its forms with `Origin: null`.
        if fetch_site == "same-origin":
            return True
        # "none": the user's own action (a reload, a bookmark), never another site's page.
        if fetch_site is not None and fetch_site != "none":
            return False
        origin = request.headers.get("origin")
        if origin is None:
            return True
        ours = {_origin(self.deps.site.base_url), _origin(str(request.base_url))} - {""}
        return _origin(origin) in ours

    async def save_preferences(self, request: Request) -> Response:
        """POST /preferences/{token}: change topics, language and frequency (CSRF-checked)."""
        if (limited := self._link_limited(request)) is not None:
            return limited
        token = _token(request)
        if not self._same_origin(request):
            return _page(self.deps.pages.preferences("forbidden"), 403)
        form = await request.form(max_files=0, max_fields=MAX_TOPICS + 10)
        expected = csrf_value(self.deps.csrf_secret, token)
        if not hmac.compare_digest(_text(form, _CSRF_FIELD).encode(), expected.encode()):
            return _page(self.deps.pages.preferences("forbidden"), 403)
        subscriber = await self.deps.audience.holder(Purpose.PREFERENCES, token)
        if subscriber is None:
            return _page(self.deps.pages.preferences("invalid"), 400)
        if subscriber.state is not SubscriberState.CONFIRMED:
            return _page(self.deps.pages.preferences("not_subscribed"), 409)
        topics = _unique(form.getlist("topics"))
        lang, frequency = _text(form, "lang"), _text(form, "frequency")
        known = await self._known_topics()
        errors = choice_errors(topics, lang, frequency, {*known, *subscriber.topics})
        if errors:
            body = self._preferences_page(
                token, subscriber, known, topics=topics, lang=lang, frequency=frequency, errors=errors
            )
            return _page(body, 422)
        prefs = Preferences(tuple(sorted(topics)), lang, Frequency(frequency))
        updated = await self.deps.audience.update_preferences(token, prefs)
        if updated is None:  # unsubscribed meanwhile
            return _page(self.deps.pages.preferences("not_subscribed"), 409)
        log.info("preferences changed", extra={"subscriber": updated.id})
        body = self._preferences_page(
            token, updated, known, topics=updated.topics, lang=updated.lang, frequency=updated.frequency,
            saved=True,
        )  # fmt: skip
        return _page(body)


def _choices(
    offered: Sequence[str],
    chosen: Collection[str],
    lang: str,
    frequency: str,
    errors: Mapping[str, str] | None,
) -> Choices:
    return Choices(offered, chosen, lang, frequency, _LANGUAGE_CHOICES, _FREQUENCY_CHOICES, errors or {})

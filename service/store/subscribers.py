"""Subscribers: double opt-in, preferences, suppression (unsubscribed and bounced), consent records."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from service.models import Consent, Frequency, Subscriber, SubscriberState
from service.store.database import Database
from service.store.schema import subscriber_topics, subscribers

SUPPRESSED = (SubscriberState.UNSUBSCRIBED, SubscriberState.BOUNCED)


@dataclass(frozen=True, slots=True)
class Preferences:
    """What a subscriber wants: topics (empty: all), language and frequency."""

    topics: tuple[str, ...] = ()
    lang: str = "en"
    frequency: Frequency = Frequency.IMMEDIATE


class Requested(enum.StrEnum):
    """What a subscription request did (never shown to the requester: no enumeration)."""

    NEW = "new"
    PENDING = "pending"  # already waiting for confirmation
    CONFIRMED = "confirmed"  # already subscribed: nothing changes
    RENEWED = "renewed"  # was unsubscribed or bounced: a new confirmation is needed


@dataclass(frozen=True, slots=True)
class RequestResult:
    """The subscriber after the request, and whether a confirmation mail is due now."""

    subscriber: Subscriber
    outcome: Requested
    send_confirmation: bool


def _to_subscriber(row: Row[Any], topics: Sequence[str]) -> Subscriber:
    m = row._mapping
    return Subscriber(
        id=m["id"],
        email=m["email"],
        state=SubscriberState(m["state"]),
        lang=m["lang"],
        frequency=Frequency(m["frequency"]),
        consent=Consent(m["consent_method"], m["consent_source"], m["consent_at"], m["consent_ip"]),
        created_at=m["created_at"],
        topics=() if m["all_topics"] else tuple(sorted(topics)),
        generation=m["generation"],
        confirmed_at=m["confirmed_at"],
        unsubscribed_at=m["unsubscribed_at"],
        bounced_at=m["bounced_at"],
    )


def _preference_values(prefs: Preferences) -> dict[str, Any]:
    return {"all_topics": not prefs.topics, "lang": prefs.lang, "frequency": prefs.frequency}


def _consent_values(consent: Consent) -> dict[str, Any]:
    return {
        "consent_method": consent.method,
        "consent_source": consent.source,
        "consent_at": consent.at,
        "consent_ip": consent.ip,
    }


async def _set_topics(conn: AsyncConnection, subscriber_id: int, topics: Sequence[str]) -> None:
    await conn.execute(delete(subscriber_topics).where(subscriber_topics.c.subscriber_id == subscriber_id))
    if topics:
        rows = [{"subscriber_id": subscriber_id, "topic": t} for t in sorted(set(topics))]
        await conn.execute(insert(subscriber_topics), rows)


class Subscribers:
    """Repository of subscribers."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def _load(self, conn: AsyncConnection, where: Any) -> Subscriber | None:
        row = (await conn.execute(select(subscribers).where(where))).first()
        if row is None:
            return None
        topics = await conn.execute(
            select(subscriber_topics.c.topic).where(subscriber_topics.c.subscriber_id == row.id)
        )
        return _to_subscriber(row, [t for (t,) in topics])

    async def _insert(
        self,
        conn: AsyncConnection,
        email: str,
        prefs: Preferences,
        consent: Consent,
        now: datetime,
        **values: Any,
    ) -> Subscriber:
        result = await conn.execute(
            insert(subscribers).values(
                email=email, generation=1, created_at=now,
                **_preference_values(prefs), **_consent_values(consent), **values,
            )
        )  # fmt: skip
        new_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        await _set_topics(conn, new_id, prefs.topics)
        created = await self._load(conn, subscribers.c.id == new_id)
        assert created is not None
        return created

    async def get(self, subscriber_id: int) -> Subscriber | None:
        """A subscriber by id."""
        async with self._db.engine.connect() as conn:
            return await self._load(conn, subscribers.c.id == subscriber_id)

    async def find(self, email: str) -> Subscriber | None:
        """A subscriber by (normalised) address."""
        async with self._db.engine.connect() as conn:
            return await self._load(conn, subscribers.c.email == email)

    async def request(
        self, email: str, prefs: Preferences, consent: Consent, now: datetime, window: timedelta
    ) -> RequestResult:
        """A subscription request (web, API, CLI): pending until confirmed; at most one mail per window."""
        try:
            return await self._request(email, prefs, consent, now, window)
        except IntegrityError:
            # Two requests for one new address raced (a double click): the other one created it.
            return await self._request(email, prefs, consent, now, window)

    async def _request(
        self, email: str, prefs: Preferences, consent: Consent, now: datetime, window: timedelta
    ) -> RequestResult:
        async with self._db.engine.begin() as conn:
            current = await self._load(conn, subscribers.c.email == email)
            if current is None:
                created = await self._insert(
                    conn, email, prefs, consent, now, state=SubscriberState.PENDING, confirmation_sent_at=now
                )
                return RequestResult(created, Requested.NEW, True)
            if current.state is SubscriberState.CONFIRMED:
                return RequestResult(current, Requested.CONFIRMED, False)
            values: dict[str, Any] = {**_preference_values(prefs), **_consent_values(consent)}
            outcome = Requested.PENDING
            if current.state in SUPPRESSED:
                # Old confirm links must not resurrect an address: a new generation invalidates them.
                values.update(
                    state=SubscriberState.PENDING, generation=current.generation + 1,
                    confirmed_at=None, unsubscribed_at=None, bounced_at=None,
                )  # fmt: skip
                outcome = Requested.RENEWED
            last = (
                await conn.execute(
                    select(subscribers.c.confirmation_sent_at).where(subscribers.c.id == current.id)
                )
            ).scalar()
            # A renewal invalidated every confirm link already sent, so it always gets a fresh one.
            due = outcome is Requested.RENEWED or last is None or now - last >= window
            if due:
                values["confirmation_sent_at"] = now
            await conn.execute(update(subscribers).where(subscribers.c.id == current.id).values(**values))
            await _set_topics(conn, current.id, prefs.topics)
            updated = await self._load(conn, subscribers.c.id == current.id)
            assert updated is not None
            return RequestResult(updated, outcome, due)

    async def add_confirmed(
        self, email: str, prefs: Preferences, consent: Consent, now: datetime
    ) -> tuple[Subscriber, bool]:
        """Add an address whose consent was obtained elsewhere; never overrides an unsubscribe or bounce.

        Returns the subscriber and whether it was added (False: it already existed).
        """
        try:
            return await self._add_confirmed(email, prefs, consent, now)
        except IntegrityError:
            return await self._add_confirmed(email, prefs, consent, now)

    async def _add_confirmed(
        self, email: str, prefs: Preferences, consent: Consent, now: datetime
    ) -> tuple[Subscriber, bool]:
        async with self._db.engine.begin() as conn:
            current = await self._load(conn, subscribers.c.email == email)
            if current is not None:
                if current.state is SubscriberState.PENDING:
                    await conn.execute(
                        update(subscribers)
                        .where(subscribers.c.id == current.id)
                        .values(state=SubscriberState.CONFIRMED, confirmed_at=now, **_consent_values(consent))
                    )
                    confirmed = await self._load(conn, subscribers.c.id == current.id)
                    assert confirmed is not None
                    return confirmed, True
                return current, False
            added = await self._insert(
                conn, email, prefs, consent, now, state=SubscriberState.CONFIRMED, confirmed_at=now
            )
            return added, True

    async def confirm(self, subscriber_id: int, generation: int, now: datetime) -> Subscriber | None:
        """Follow a confirmation link: pending -> confirmed if the link is of the current generation."""
        async with self._db.engine.begin() as conn:
            await conn.execute(
                update(subscribers)
                .where(
                    subscribers.c.id == subscriber_id,
                    subscribers.c.generation == generation,
                    subscribers.c.state == SubscriberState.PENDING,
                )
                .values(state=SubscriberState.CONFIRMED, confirmed_at=now)
            )
            current = await self._load(conn, subscribers.c.id == subscriber_id)
        if (
            current is None
            or current.generation != generation
            or current.state is not SubscriberState.CONFIRMED
        ):
            return None
        return current

    async def _suppress(self, subscriber_id: int, state: SubscriberState, column: str, now: datetime) -> bool:
        async with self._db.engine.begin() as conn:
            result = await conn.execute(
                update(subscribers)
                .where(subscribers.c.id == subscriber_id, subscribers.c.state.not_in(SUPPRESSED))
                .values(state=state, **{column: now})
            )
            return bool(result.rowcount)

    async def unsubscribe(self, subscriber_id: int, now: datetime) -> bool:
        """Stop all mail to this subscriber; idempotent (False if already suppressed or unknown)."""
        return await self._suppress(subscriber_id, SubscriberState.UNSUBSCRIBED, "unsubscribed_at", now)

    async def bounce(self, subscriber_id: int, now: datetime) -> bool:
        """A permanent delivery failure: never mail this address again."""
        return await self._suppress(subscriber_id, SubscriberState.BOUNCED, "bounced_at", now)

    async def set_preferences(self, subscriber_id: int, prefs: Preferences) -> Subscriber | None:
        """Change topics, language and frequency."""
        async with self._db.engine.begin() as conn:
            await conn.execute(
                update(subscribers)
                .where(subscribers.c.id == subscriber_id)
                .values(**_preference_values(prefs))
            )
            await _set_topics(conn, subscriber_id, prefs.topics)
            return await self._load(conn, subscribers.c.id == subscriber_id)

    async def erase(self, email: str) -> bool:
        """Delete the address and everything about it (right to erasure); its deliveries go too."""
        async with self._db.engine.begin() as conn:
            result = await conn.execute(delete(subscribers).where(subscribers.c.email == email))
            return bool(result.rowcount)

    async def all(self, state: SubscriberState | None = None, page: int = 1000) -> AsyncIterator[Subscriber]:
        """Every subscriber (optionally in one state), by id, streamed in pages."""
        after = 0
        while True:
            async with self._db.engine.connect() as conn:
                query = (
                    select(subscribers).where(subscribers.c.id > after).order_by(subscribers.c.id).limit(page)
                )
                if state is not None:
                    query = query.where(subscribers.c.state == state)
                rows = (await conn.execute(query)).all()
                if not rows:
                    return
                ids = [r.id for r in rows]
                topic_rows = await conn.execute(
                    select(subscriber_topics).where(subscriber_topics.c.subscriber_id.in_(ids))
                )
                topics: dict[int, list[str]] = {}
                for t in topic_rows:
                    topics.setdefault(t.subscriber_id, []).append(t.topic)
            for row in rows:
                yield _to_subscriber(row, topics.get(row.id, []))
            after = ids[-1]

    async def counts(self) -> dict[SubscriberState, int]:
        """Number of subscribers in each state."""
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(select(subscribers.c.state, func.count()).group_by(subscribers.c.state))
            found = {SubscriberState(state): n for state, n in rows}
        return {state: found.get(state, 0) for state in SubscriberState}

"""The delivery ledger: one row per (subscriber, message), claimed in batches, outcome recorded durably.

A row is created before anything is sent and is marked only after the server answered, so a crash
loses nothing: claimed rows whose lease ran out are claimed again (at worst a duplicate of the
messages that were in flight).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)

from service.models import (
    DeliveryKind,
    DeliveryState,
    Frequency,
    Outcome,
    ReleaseState,
    SendResult,
    SubscriberState,
)
from service.store.database import Database
from service.store.schema import UTCDateTime, deliveries, releases, subscriber_topics, subscribers

_claims = itertools.count(1)
_ANALYZE_AFTER = 10_000  # queued rows from which a fan-out refreshes PostgreSQL's table statistics
_QUEUE_COLUMNS = [
    "subscriber_id", "kind", "key", "release_id", "release_version", "state", "attempts",
    "next_attempt_at", "expires_at", "created_at",
]  # fmt: skip
MAX_BACKOFF = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Claimed:
    """A ledger row this node holds, with what the sender needs to know about its subscriber."""

    delivery_id: int
    subscriber_id: int
    email: str
    subscriber_state: SubscriberState
    generation: int
    lang: str
    kind: DeliveryKind
    key: str
    release_id: str | None
    attempts: int
    expires_at: datetime
    payload: tuple[str, ...] = ()  # digests: release ids, newest first
    claim: str = ""  # the claim's token (node#n), to renew its lease


@dataclass(frozen=True, slots=True)
class Attempt:
    """The result of sending one claimed row."""

    delivery_id: int
    subscriber_id: int
    result: SendResult
    message_id: str = ""
    release_version: int | None = None


def _queued(
    kind: DeliveryKind, key: Any, release_id: Any, version: Any, now: datetime, horizon: timedelta
) -> list[Any]:
    """The columns of a new queued row, after subscriber_id, in _QUEUE_COLUMNS order.

    `key`, `release_id` and `version` are values, or SQL expressions evaluated per subscriber.
    """
    return [
        literal(kind.value),
        *(v if isinstance(v, ColumnElement) else literal(v) for v in (key, release_id, version)),
        literal(DeliveryState.QUEUED.value), literal(0),
        literal(now, UTCDateTime), literal(now + horizon, UTCDateTime), literal(now, UTCDateTime),
    ]  # fmt: skip


def backoff(attempts: int) -> timedelta:
    """Wait before retry number `attempts` (1-based): 1, 2, 4 ... minutes, at most an hour."""
    return min(timedelta(minutes=2 ** max(0, attempts - 1)), MAX_BACKOFF)


class Ledger:
    """Repository of deliveries."""

    def __init__(self, db: Database, default_language: str = "en") -> None:
        self._db = db
        self._default_language = default_language.split("-")[0].lower()
        # SQLite walks the (state, next_attempt_at) index: ordering by id made it sort every due row
        # on every claim (200 ms with a million queued). PostgreSQL's planner does better with id.
        self._claim_order = (
            (deliveries.c.id,)
            if db.dialect == "postgresql"
            else (deliveries.c.next_attempt_at, deliveries.c.id)
        )

    async def fan_out(
        self,
        release_id: str,
        version: int,
        topics: Sequence[str],
        now: datetime,
        horizon: timedelta,
        mail: bool,
    ) -> int | None:
        """Queue one bulletin per confirmed immediate subscriber whose topics match, exactly once per release.

        A release with several language versions is mailed once: each subscriber gets the version in
        their language, else the one in the default language, else this one. Returns the number
        queued, or None if the release was already fanned out (by us or another node). With `mail`
        False the release is only marked done (too old to mail).
        """
        async with self._db.engine.begin() as conn:
            key = (
                await conn.execute(select(releases.c.translation_key).where(releases.c.id == release_id))
            ).scalar_one_or_none()
            # Locking every version first makes two nodes fanning out two versions at once take turns.
            group = (
                await conn.execute(
                    select(
                        releases.c.id,
                        releases.c.version,
                        releases.c.language,
                        releases.c.state,
                        releases.c.fanout_at,
                    )
                    .where(releases.c.translation_key == key)
                    .order_by(releases.c.id)
                    .with_for_update()
                )
            ).all()
            mine = next((g for g in group if g.id == release_id), None)
            if mine is None or mine.state != ReleaseState.PUBLISHED or mine.fanout_at is not None:
                return None
            mailed_before = any(g.fanout_at is not None for g in group)
            versions = [g for g in group if g.state == ReleaseState.PUBLISHED and g.fanout_at is None]
            await conn.execute(
                update(releases).where(releases.c.id.in_([g.id for g in versions])).values(fanout_at=now)
            )
            if mailed_before or not mail:
                return 0  # a version published later than the others is not mailed again
            chosen_id, chosen_version = self._version_for_each_subscriber(versions, release_id, version)
            wants_topic = exists(
                select(subscriber_topics.c.topic).where(
                    subscriber_topics.c.subscriber_id == subscribers.c.id,
                    subscriber_topics.c.topic.in_(topics),
                )
            )
            audience = (
                select(
                    subscribers.c.id,
                    *_queued(
                        DeliveryKind.BULLETIN,
                        literal("bulletin:") + chosen_id,
                        chosen_id,
                        chosen_version,
                        now,
                        horizon,
                    ),
                )
                .where(
                    subscribers.c.state == SubscriberState.CONFIRMED,
                    subscribers.c.frequency == Frequency.IMMEDIATE,
                    or_(subscribers.c.all_topics.is_(True), wants_topic)
                    if topics
                    else subscribers.c.all_topics,
                )
                .order_by(subscribers.c.id)
            )
            result = await conn.execute(insert(deliveries).from_select(_QUEUE_COLUMNS, audience))
            queued = int(result.rowcount)
        if queued >= _ANALYZE_AFTER and self._db.dialect == "postgresql":
            # Right after a bulk insert the planner still thinks the table is nearly empty and every
            # claim chose a slow plan (65-85 ms at 100,000 rows instead of 2 ms): refresh its figures.
            async with self._db.engine.begin() as conn:
                await conn.execute(text("ANALYZE deliveries"))
        return queued

    def _version_for_each_subscriber(
        self, versions: Sequence[Any], release_id: str, version: int
    ) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
        # SQL giving, per subscriber row, the id and version of the language version they get.
        default = next((g for g in versions if g.language == self._default_language), None)
        fallback_id, fallback_version = (default.id, default.version) if default else (release_id, version)
        first: dict[str, Any] = {}
        for g in versions:  # sorted by id: the first id wins within a language
            first.setdefault(g.language, g)
        lang = func.lower(subscribers.c.lang)
        cases = [
            (or_(lang == code, lang.like(f"{code}-%")), g) for code, g in first.items() if g.id != fallback_id
        ]
        if not cases:
            return literal(fallback_id), literal(fallback_version)
        return (
            case(*((speaks, literal(g.id)) for speaks, g in cases), else_=literal(fallback_id)),
            case(*((speaks, literal(g.version)) for speaks, g in cases), else_=literal(fallback_version)),
        )

    async def awaiting_fan_out(self) -> list[tuple[str, int, list[str], datetime]]:
        """(id, version, topics, date) of published releases whose bulletins are not queued yet."""
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(
                select(releases.c.id, releases.c.version, releases.c.topics, releases.c.date)
                .where(releases.c.state == ReleaseState.PUBLISHED, releases.c.fanout_at.is_(None))
                .order_by(releases.c.published_at, releases.c.id)
            )
            return [(r.id, r.version, list(r.topics), r.date) for r in rows]

    async def awaiting_corrections(self) -> list[tuple[str, int]]:
        """(id, version) of published releases with a correction note whose notices are not queued yet."""
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(
                select(releases.c.id, releases.c.version).where(
                    releases.c.state == ReleaseState.PUBLISHED,
                    releases.c.fanout_at.is_not(None),
                    releases.c.corrected_at.is_not(None),
                    or_(
                        releases.c.correction_fanout_at.is_(None),
                        releases.c.correction_fanout_at < releases.c.corrected_at,
                    ),
                )
            )
            return [(r.id, r.version) for r in rows]

    async def fan_out_correction(
        self, release_id: str, version: int, now: datetime, horizon: timedelta
    ) -> int | None:
        """Queue a correction notice for all who got (or may have got) the bulletin; once per correction."""
        async with self._db.engine.begin() as conn:
            won = await conn.execute(
                update(releases)
                .where(
                    releases.c.id == release_id,
                    releases.c.corrected_at.is_not(None),
                    or_(
                        releases.c.correction_fanout_at.is_(None),
                        releases.c.correction_fanout_at < releases.c.corrected_at,
                    ),
                )
                .values(correction_fanout_at=now)
            )
            if not won.rowcount:
                return None
            earlier = (
                select(
                    deliveries.c.subscriber_id,
                    *_queued(
                        DeliveryKind.CORRECTION,
                        f"correction:{release_id}:v{version}",
                        release_id,
                        version,
                        now,
                        horizon,
                    ),
                )
                .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
                .where(
                    deliveries.c.release_id == release_id,
                    deliveries.c.kind == DeliveryKind.BULLETIN,
                    deliveries.c.state.in_([DeliveryState.SENT, DeliveryState.UNKNOWN]),
                    subscribers.c.state == SubscriberState.CONFIRMED,
                )
                .order_by(deliveries.c.subscriber_id)
            )
            result = await conn.execute(insert(deliveries).from_select(_QUEUE_COLUMNS, earlier))
            return int(result.rowcount)

    async def queue_digests(
        self,
        frequency: Frequency,
        period: timedelta,
        now: datetime,
        horizon: timedelta,
        max_age: timedelta,
        page: int = 1000,
    ) -> int:
        """One digest per confirmed `frequency` subscriber with something new since their last one.

        The key names the day, so two nodes (or a rerun) queue each digest once.
        """
        key = f"digest:{frequency}:{now.date().isoformat()}"
        queued, after = 0, 0
        async with self._db.engine.connect() as conn:
            recent = (
                await conn.execute(
                    select(releases.c.id, releases.c.topics, releases.c.published_at)
                    .where(
                        releases.c.state == ReleaseState.PUBLISHED,
                        releases.c.published_at > now - 2 * period,
                        releases.c.date >= now - period - max_age,  # an archive import is never mailed
                    )
                    .order_by(releases.c.date.desc(), releases.c.id.desc())
                )
            ).all()
        if not recent:
            return 0
        while True:
            async with self._db.engine.begin() as conn:
                batch = (
                    await conn.execute(
                        select(subscribers.c.id, subscribers.c.all_topics, subscribers.c.last_digest_at,
                               subscribers.c.confirmed_at)
                        .where(subscribers.c.id > after, subscribers.c.state == SubscriberState.CONFIRMED,
                               subscribers.c.frequency == frequency)
                        .order_by(subscribers.c.id)
                        .limit(page)
                    )
                ).all()  # fmt: skip
                if not batch:
                    return queued
                after = batch[-1].id
                wanted = await _topics_of(conn, [b.id for b in batch if not b.all_topics])
                rows = []
                for sub in batch:
                    ids = [
                        r.id
                        for r in recent
                        if _in_period(r.published_at, sub, now - period)
                        and (sub.all_topics or wanted.get(sub.id, set()) & set(r.topics))
                    ]
                    if ids:
                        rows.append({
                            "subscriber_id": sub.id, "kind": DeliveryKind.DIGEST, "key": key, "payload": ids,
                            "state": DeliveryState.QUEUED, "attempts": 0, "next_attempt_at": now,
                            "expires_at": now + horizon, "created_at": now,
                        })  # fmt: skip
                taken = await conn.execute(
                    select(deliveries.c.subscriber_id).where(
                        deliveries.c.key == key,
                        deliveries.c.subscriber_id.in_([r["subscriber_id"] for r in rows]),
                    )
                )
                done = {t.subscriber_id for t in taken}
                rows = [r for r in rows if r["subscriber_id"] not in done]
                if rows:
                    await conn.execute(insert(deliveries), rows)
                    queued += len(rows)
                await conn.execute(
                    update(subscribers)
                    .where(subscribers.c.id.in_([b.id for b in batch]))
                    .values(last_digest_at=now)
                )

    async def enqueue(
        self,
        subscriber_id: int,
        kind: DeliveryKind,
        key: str,
        now: datetime,
        horizon: timedelta,
        release_id: str | None = None,
    ) -> bool:
        """Queue one message for one subscriber; False if that (subscriber, key) is already queued or sent."""
        async with self._db.engine.begin() as conn:
            present = await conn.execute(
                select(deliveries.c.id).where(
                    deliveries.c.subscriber_id == subscriber_id, deliveries.c.key == key
                )
            )
            if present.first() is not None:
                return False
            await conn.execute(
                insert(deliveries).values(
                    subscriber_id=subscriber_id, kind=kind, key=key, release_id=release_id,
                    state=DeliveryState.QUEUED, attempts=0, next_attempt_at=now, expires_at=now + horizon,
                    created_at=now,
                )
            )  # fmt: skip
        return True

    async def claim(
        self, node: str, limit: int, now: datetime, lease: timedelta, retry_unknown: bool
    ) -> list[Claimed]:
        """Take up to `limit` due rows for this node until now + lease (SKIP LOCKED on PostgreSQL)."""
        states = [DeliveryState.QUEUED, DeliveryState.RETRY] + (
            [DeliveryState.UNKNOWN] if retry_unknown else []
        )
        token = f"{node}#{next(_claims)}"
        async with self._db.engine.begin() as conn:
            due = (
                select(deliveries.c.id)
                .where(
                    deliveries.c.state.in_(states),
                    deliveries.c.next_attempt_at <= now,
                    or_(deliveries.c.claimed_until.is_(None), deliveries.c.claimed_until < now),
                )
                .order_by(*self._claim_order)
                .limit(limit)
            )
            if self._db.dialect == "postgresql":
                due = due.with_for_update(skip_locked=True)
            ids = [r.id for r in await conn.execute(due)]
            if not ids:
                return []
            # The whole condition again: on SQLite the SELECT ran before this transaction held the write
            # lock, and meanwhile another process may have claimed these rows, or sent and recorded them.
            await conn.execute(
                update(deliveries)
                .where(
                    deliveries.c.id.in_(ids),
                    deliveries.c.state.in_(states),
                    deliveries.c.next_attempt_at <= now,
                    or_(deliveries.c.claimed_until.is_(None), deliveries.c.claimed_until < now),
                )
                .values(claimed_by=token, claimed_until=now + lease)
            )
            rows = await conn.execute(
                select(deliveries, subscribers.c.email, subscribers.c.state.label("subscriber_state"),
                       subscribers.c.generation, subscribers.c.lang)
                .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
                .where(deliveries.c.claimed_by == token, deliveries.c.id.in_(ids))
                .order_by(deliveries.c.id)
            )  # fmt: skip
            return [_claimed(r._mapping) for r in rows]

    async def renew(self, rows: Sequence[Claimed], until: datetime) -> int:
        """Extend the lease of claimed rows this node still holds (it is alive and still sending them)."""
        by_claim: dict[str, list[int]] = {}
        for row in rows:
            by_claim.setdefault(row.claim, []).append(row.delivery_id)
        renewed = 0
        async with self._db.engine.begin() as conn:
            for claim, ids in by_claim.items():
                result = await conn.execute(
                    update(deliveries)
                    .where(
                        deliveries.c.id.in_(ids),
                        deliveries.c.claimed_by == claim,
                        deliveries.c.claimed_until.is_not(None),
                    )
                    .values(claimed_until=until)
                )
                renewed += int(result.rowcount)
        return renewed

    async def record(
        self, attempts: Sequence[Attempt], now: datetime, retry_unknown: bool, unknown_delay: timedelta
    ) -> None:
        """Write every outcome of a batch in one transaction; 5xx bounces the subscriber."""
        if not attempts:
            return
        async with self._db.engine.begin() as conn:
            current = {
                r.id: r
                for r in await conn.execute(
                    select(deliveries.c.id, deliveries.c.attempts, deliveries.c.expires_at).where(
                        deliveries.c.id.in_([a.delivery_id for a in attempts])
                    )
                )
            }
            updates = [
                _outcome_values(a, current[a.delivery_id], now, retry_unknown, unknown_delay)
                for a in attempts
            ]
            statement = (
                update(deliveries)
                .where(deliveries.c.id == bindparam("b_id"))
                .values(
                    state=bindparam("b_state"),
                    attempts=bindparam("b_attempts"),
                    next_attempt_at=bindparam("b_next", type_=UTCDateTime),
                    sent_at=bindparam("b_sent", type_=UTCDateTime),
                    reply=bindparam("b_reply"),
                    message_id=bindparam("b_message_id"),
                    release_version=func.coalesce(bindparam("b_version"), deliveries.c.release_version),
                    claimed_until=None,  # claimed_by stays: which node made the last attempt
                )
            )
            await conn.execute(statement, updates)
            bounced = sorted({a.subscriber_id for a in attempts if a.result.outcome is Outcome.PERMANENT})
            if bounced:
                await conn.execute(
                    update(subscribers)
                    .where(subscribers.c.id.in_(bounced), subscribers.c.state != SubscriberState.UNSUBSCRIBED)
                    .values(state=SubscriberState.BOUNCED, bounced_at=now)
                )

    async def skip(self, delivery_ids: Sequence[int], reason: str) -> None:
        """Mark rows that must not be sent any more (the subscriber left, or already confirmed)."""
        if not delivery_ids:
            return
        async with self._db.engine.begin() as conn:
            await conn.execute(
                update(deliveries)
                .where(deliveries.c.id.in_(delivery_ids))
                .values(state=DeliveryState.SKIPPED, reply=reason, claimed_by=None, claimed_until=None)
            )

    async def pending(self, now: datetime, retry_unknown: bool) -> int:
        """Rows still to send (queued, retrying, and unknown when those are retried)."""
        states = [DeliveryState.QUEUED, DeliveryState.RETRY] + (
            [DeliveryState.UNKNOWN] if retry_unknown else []
        )
        async with self._db.engine.connect() as conn:
            return int(
                (
                    await conn.execute(
                        select(func.count()).select_from(deliveries).where(deliveries.c.state.in_(states))
                    )
                ).scalar_one()
            )

    async def progress(self) -> dict[str, dict[DeliveryState, int]]:
        """Per release id (or message kind for mail not tied to a release): rows in each state."""
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(
                select(deliveries.c.release_id, deliveries.c.kind, deliveries.c.state, func.count())
                .group_by(deliveries.c.release_id, deliveries.c.kind, deliveries.c.state)
                .order_by(deliveries.c.release_id, deliveries.c.kind)
            )
            table: dict[str, dict[DeliveryState, int]] = {}
            for release_id, kind, state, n in rows:
                name = f"{kind} {release_id}" if release_id else str(kind)
                table.setdefault(name, dict.fromkeys(DeliveryState, 0))[DeliveryState(state)] += n
            return table


def _in_period(published_at: datetime, sub: Any, earliest: datetime) -> bool:
    # After the previous digest (exclusive: it carried what was published up to its time), or for a
    # first digest since confirming (inclusive), and never further back than one period.
    if sub.last_digest_at is not None:
        return bool(published_at > max(sub.last_digest_at, earliest))
    return bool(published_at >= max(filter(None, (sub.confirmed_at, earliest))))


async def _topics_of(conn: Any, subscriber_ids: Sequence[int]) -> dict[int, set[str]]:
    if not subscriber_ids:
        return {}
    rows = await conn.execute(
        select(subscriber_topics).where(subscriber_topics.c.subscriber_id.in_(subscriber_ids))
    )
    topics: dict[int, set[str]] = {}
    for row in rows:
        topics.setdefault(row.subscriber_id, set()).add(row.topic)
    return topics


def _claimed(m: Any) -> Claimed:
    return Claimed(
        delivery_id=m["id"],
        subscriber_id=m["subscriber_id"],
        email=m["email"],
        subscriber_state=SubscriberState(m["subscriber_state"]),
        generation=m["generation"],
        lang=m["lang"],
        kind=DeliveryKind(m["kind"]),
        key=m["key"],
        release_id=m["release_id"],
        attempts=m["attempts"],
        expires_at=m["expires_at"],
        payload=tuple(m["payload"] or ()),
        claim=m["claimed_by"] or "",
    )


def _outcome_values(
    attempt: Attempt, current: Any, now: datetime, retry_unknown: bool, unknown_delay: timedelta
) -> dict[str, Any]:
    outcome = attempt.result.outcome
    tries = int(current.attempts) + 1
    state, next_at, sent = DeliveryState.SENT, now, None
    if outcome is Outcome.SENT:
        sent = now
    elif outcome is Outcome.PERMANENT:
        state = DeliveryState.FAILED
    elif outcome is Outcome.UNKNOWN:
        state = DeliveryState.UNKNOWN
        next_at = now + unknown_delay if retry_unknown else now
    elif now + backoff(tries) > current.expires_at:
        state = DeliveryState.FAILED  # temporary failures for longer than the retry horizon
    else:
        state, next_at = DeliveryState.RETRY, now + backoff(tries)
    return {
        "b_id": attempt.delivery_id,
        "b_state": state.value,
        "b_attempts": tries,
        "b_next": next_at,
        "b_sent": sent,
        "b_reply": attempt.result.reply[:2000],
        "b_message_id": attempt.message_id or None,
        "b_version": attempt.release_version,
    }

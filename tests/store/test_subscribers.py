"""Subscribers and the ledger on SQLite and PostgreSQL: opt-in states, suppression, claims, outcomes."""

from __future__ import annotations

from datetime import timedelta

from service.models import (
    Consent,
    DeliveryKind,
    DeliveryState,
    Frequency,
    Outcome,
    SendResult,
    SubscriberState,
)
from service.runtime import Components
from service.store.ledger import Attempt, backoff
from service.store.subscribers import Preferences, Requested
from tests.conftest import FakeClock

WINDOW = timedelta(hours=1)
HORIZON = timedelta(days=3)


def consent(clock: FakeClock, method: str = "web") -> Consent:
    return Consent(method, "test", clock.now(), "192.0.2.1")


async def test_request_states_and_confirmation_window(parts: Components, clock: FakeClock) -> None:
    subs = parts.subscribers
    first = await subs.request("a@example.com", Preferences(), consent(clock), clock.now(), WINDOW)
    assert (first.outcome, first.send_confirmation, first.subscriber.state) == (
        Requested.NEW, True, SubscriberState.PENDING,
    )  # fmt: skip
    again = await subs.request("a@example.com", Preferences(), consent(clock), clock.now(), WINDOW)
    assert (again.outcome, again.send_confirmation) == (Requested.PENDING, False)
    clock.advance(hours=2)
    later = await subs.request("a@example.com", Preferences(), consent(clock), clock.now(), WINDOW)
    assert later.send_confirmation
    confirmed = await subs.confirm(first.subscriber.id, first.subscriber.generation, clock.now())
    assert confirmed is not None
    assert confirmed.state is SubscriberState.CONFIRMED
    known = await subs.request("a@example.com", Preferences(), consent(clock), clock.now(), WINDOW)
    assert (known.outcome, known.send_confirmation) == (Requested.CONFIRMED, False)


async def test_unsubscribed_address_needs_a_new_confirmation(parts: Components, clock: FakeClock) -> None:
    subs = parts.subscribers
    first = await subs.request("a@example.com", Preferences(), consent(clock), clock.now(), WINDOW)
    await subs.confirm(first.subscriber.id, 1, clock.now())
    assert await subs.unsubscribe(first.subscriber.id, clock.now())
    assert not await subs.unsubscribe(first.subscriber.id, clock.now())  # idempotent
    clock.advance(hours=2)
    renewed = await subs.request("a@example.com", Preferences(), consent(clock), clock.now(), WINDOW)
    assert (renewed.outcome, renewed.subscriber.state, renewed.subscriber.generation) == (
        Requested.RENEWED, SubscriberState.PENDING, 2,
    )  # fmt: skip
    assert await subs.confirm(first.subscriber.id, 1, clock.now()) is None  # an old link does nothing
    assert await subs.confirm(first.subscriber.id, 2, clock.now()) is not None


async def test_import_never_overrides_suppression(parts: Components, clock: FakeClock) -> None:
    subs = parts.subscribers
    added, new = await subs.add_confirmed(
        "b@example.com", Preferences(), consent(clock, "import"), clock.now()
    )
    assert new
    await subs.bounce(added.id, clock.now())
    again, new = await subs.add_confirmed(
        "b@example.com", Preferences(), consent(clock, "import"), clock.now()
    )
    assert (new, again.state) == (False, SubscriberState.BOUNCED)


async def test_preferences_and_topics_round_trip(parts: Components, clock: FakeClock) -> None:
    subs = parts.subscribers
    added, _ = await subs.add_confirmed(
        "c@example.com", Preferences(("research",)), consent(clock), clock.now()
    )
    assert added.topics == ("research",)
    changed = await subs.set_preferences(
        added.id, Preferences(("awards", "research"), "fr", Frequency.WEEKLY)
    )
    assert changed is not None
    assert (changed.topics, changed.lang, changed.frequency) == (
        ("awards", "research"),
        "fr",
        Frequency.WEEKLY,
    )
    everyone = [s.email async for s in subs.all(page=1)]
    assert everyone == ["c@example.com"]


async def test_claims_are_exclusive_and_leases_expire(parts: Components, clock: FakeClock) -> None:
    added, _ = await parts.subscribers.add_confirmed(
        "d@example.com", Preferences(), consent(clock), clock.now()
    )
    assert await parts.ledger.enqueue(added.id, DeliveryKind.CONFIRMATION, "k1", clock.now(), HORIZON)
    assert not await parts.ledger.enqueue(added.id, DeliveryKind.CONFIRMATION, "k1", clock.now(), HORIZON)
    lease = timedelta(minutes=2)
    first = await parts.ledger.claim("node-a", 10, clock.now(), lease, True)
    assert [c.email for c in first] == ["d@example.com"]
    assert await parts.ledger.claim("node-b", 10, clock.now(), lease, True) == []
    clock.advance(minutes=3)  # node-a died: its lease ran out
    assert len(await parts.ledger.claim("node-b", 10, clock.now(), lease, True)) == 1


async def test_a_renewed_lease_keeps_rows_from_other_nodes(parts: Components, clock: FakeClock) -> None:
    added, _ = await parts.subscribers.add_confirmed(
        "r@example.com", Preferences(), consent(clock), clock.now()
    )
    await parts.ledger.enqueue(added.id, DeliveryKind.CONFIRMATION, "k", clock.now(), HORIZON)
    lease = timedelta(minutes=2)
    held = await parts.ledger.claim("node-a", 10, clock.now(), lease, True)
    clock.advance(minutes=1, seconds=30)
    assert await parts.ledger.renew(held, clock.now() + lease) == 1  # node-a is alive, still sending
    clock.advance(minutes=1)  # past the first lease, within the renewed one
    assert await parts.ledger.claim("node-b", 10, clock.now(), lease, True) == []
    clock.advance(minutes=2)  # node-a stopped renewing: it died
    taken = await parts.ledger.claim("node-b", 10, clock.now(), lease, True)
    assert [r.claim.split("#")[0] for r in taken] == ["node-b"]
    assert await parts.ledger.renew(held, clock.now() + lease) == 0  # node-a's claim is gone


async def test_outcomes_are_recorded(parts: Components, clock: FakeClock) -> None:
    ids = []
    for n in range(4):
        added, _ = await parts.subscribers.add_confirmed(
            f"e{n}@example.com", Preferences(), consent(clock), clock.now()
        )
        await parts.ledger.enqueue(added.id, DeliveryKind.CONFIRMATION, "k", clock.now(), HORIZON)
        ids.append(added.id)
    rows = await parts.ledger.claim("n", 10, clock.now(), timedelta(minutes=1), True)
    outcomes = [Outcome.SENT, Outcome.TEMPORARY, Outcome.PERMANENT, Outcome.UNKNOWN]
    attempts = [
        Attempt(r.delivery_id, r.subscriber_id, SendResult(o, f"reply {o}"))
        for r, o in zip(rows, outcomes, strict=True)
    ]
    await parts.ledger.record(attempts, clock.now(), True, timedelta(minutes=10))
    table = (await parts.ledger.progress())["confirmation"]
    assert {s: n for s, n in table.items() if n} == {
        DeliveryState.SENT: 1, DeliveryState.RETRY: 1, DeliveryState.FAILED: 1, DeliveryState.UNKNOWN: 1,
    }  # fmt: skip
    bounced = await parts.subscribers.get(ids[2])
    assert bounced is not None
    assert bounced.state is SubscriberState.BOUNCED
    assert await parts.ledger.claim("n", 10, clock.now(), timedelta(minutes=1), True) == []  # not due yet
    clock.advance(minutes=11)
    again = await parts.ledger.claim("n", 10, clock.now(), timedelta(minutes=1), True)
    assert sorted(r.subscriber_id for r in again) == [ids[1], ids[3]]


async def test_retries_stop_at_the_horizon(parts: Components, clock: FakeClock) -> None:
    added, _ = await parts.subscribers.add_confirmed(
        "f@example.com", Preferences(), consent(clock), clock.now()
    )
    await parts.ledger.enqueue(added.id, DeliveryKind.CONFIRMATION, "k", clock.now(), timedelta(minutes=30))
    for _ in range(10):
        rows = await parts.ledger.claim("n", 10, clock.now(), timedelta(minutes=1), True)
        await parts.ledger.record(
            [Attempt(r.delivery_id, r.subscriber_id, SendResult(Outcome.TEMPORARY, "451")) for r in rows],
            clock.now(), True, timedelta(minutes=10),
        )  # fmt: skip
        clock.advance(hours=1)
    table = (await parts.ledger.progress())["confirmation"]
    assert table[DeliveryState.FAILED] == 1
    assert [backoff(n).total_seconds() for n in (1, 2, 3, 7, 20)] == [60, 120, 240, 3600, 3600]

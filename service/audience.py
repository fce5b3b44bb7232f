"""What people do with their subscription: subscribe, confirm, unsubscribe, change preferences.

Shared by the web form, the JSON API and the command line, so every door follows the same rules:
double opt-in, no enumeration, one confirmation mail per window, suppression respected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from service.clock import Clock
from service.models import Consent, DeliveryKind, Subscriber, SubscriberState
from service.store.ledger import Ledger
from service.store.subscribers import Preferences, Requested, RequestResult, Subscribers
from service.tokens import Purpose, Tokens


@dataclass
class Audience:
    """Subscription operations, bound to the store, the token signer and the clock."""

    subscribers: Subscribers
    ledger: Ledger
    tokens: Tokens
    clock: Clock
    confirmation_window: timedelta
    retry_horizon: timedelta
    wake_dispatcher: Callable[[], None] = lambda: None

    async def subscribe(self, email: str, prefs: Preferences, consent: Consent) -> RequestResult:
        """Record a request; queue a confirmation mail if one is due. Callers answer alike either way."""
        now = self.clock.now()
        result = await self.subscribers.request(email, prefs, consent, now, self.confirmation_window)
        if result.send_confirmation:
            key = f"confirm:{result.subscriber.generation}:{int(now.timestamp())}"
            await self.ledger.enqueue(
                result.subscriber.id, DeliveryKind.CONFIRMATION, key, now, self.retry_horizon
            )
            self.wake_dispatcher()
        return result

    async def add_confirmed(
        self, email: str, prefs: Preferences, consent: Consent
    ) -> tuple[Subscriber, bool]:
        """Add an address whose consent was collected elsewhere (import with an explicit flag)."""
        return await self.subscribers.add_confirmed(email, prefs, consent, self.clock.now())

    async def confirm(self, token: str) -> Subscriber | None:
        """Follow a confirmation link; None if the link is invalid, expired or superseded."""
        claim = self.tokens.read(Purpose.CONFIRM, token)
        if claim is None:
            return None
        return await self.subscribers.confirm(claim[0], claim[1], self.clock.now())

    async def holder(self, purpose: Purpose, token: str) -> Subscriber | None:
        """The subscriber a link belongs to (None if the link is forged or for another purpose)."""
        claim = self.tokens.read(purpose, token)
        return None if claim is None else await self.subscribers.get(claim[0])

    async def unsubscribe(self, token: str) -> Subscriber | None:
        """One-click unsubscribe; idempotent. None only if the link is invalid."""
        subscriber = await self.holder(Purpose.UNSUBSCRIBE, token)
        if subscriber is None:
            return None
        await self.subscribers.unsubscribe(subscriber.id, self.clock.now())
        return await self.subscribers.get(subscriber.id)

    async def update_preferences(self, token: str, prefs: Preferences) -> Subscriber | None:
        """Change topics, language and frequency from a preferences link."""
        subscriber = await self.holder(Purpose.PREFERENCES, token)
        if subscriber is None or subscriber.state is not SubscriberState.CONFIRMED:
            return None
        return await self.subscribers.set_preferences(subscriber.id, prefs)


__all__ = ["Audience", "Preferences", "RequestResult", "Requested"]

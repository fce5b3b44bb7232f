"""A per-client sliding-window rate limit, in memory, on the injected clock, with bounded memory."""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from datetime import timedelta

from service.clock import Clock

MAX_CLIENTS = 10_000


class RateLimiter:
    """At most `limit` hits per `window` for each key (a client address).

    Clients are kept in order of their last accepted hit, so the ones idle for a whole window sit
    at the front and are dropped as soon as anyone else is seen: memory follows the clients of the
    last window, and never exceeds `max_clients` keys of at most `limit` timestamps each. When
    that many clients are active at once, the least recently seen is forgotten (it gets a fresh
    window: under such a flood, memory wins over precision). One process, one window: behind
    several processes each enforces its own limit.
    """

    def __init__(self, limit: int, window: timedelta, clock: Clock, max_clients: int = MAX_CLIENTS) -> None:
        if limit < 1 or window <= timedelta(0) or max_clients < 1:
            raise ValueError("limit, window and max_clients must be positive")
        self._limit = limit
        self._window = window.total_seconds()
        self._clock = clock
        self._max_clients = max_clients
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        """Number of clients remembered."""
        return len(self._hits)

    def hit(self, key: str) -> int | None:
        """Count one request from `key`: None if allowed, else whole seconds until it would be."""
        now = self._clock.now().timestamp()
        cutoff = now - self._window
        self._evict_idle(cutoff)
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) >= self._max_clients:
                self._hits.popitem(last=False)
            hits = self._hits[key] = deque(maxlen=self._limit)
        while hits and hits[0] <= cutoff:
            hits.popleft()
        if len(hits) >= self._limit:
            # The oldest hit in the window leaves it first; clamp in case the clock stepped back.
            wait = math.ceil(hits[0] - cutoff)
            return min(max(wait, 1), math.ceil(self._window))
        hits.append(now)
        self._hits.move_to_end(key)
        return None

    def _evict_idle(self, cutoff: float) -> None:
        while self._hits:
            key, hits = next(iter(self._hits.items()))
            if hits and hits[-1] > cutoff:
                return
            del self._hits[key]

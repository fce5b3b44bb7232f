"""WebSub publisher: tell the configured hub which feeds changed (hub.mode=publish)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from urllib.parse import urlencode

import httpx

from service.metrics import Metrics

log = logging.getLogger(__name__)
_FORM = "application/x-www-form-urlencoded"


class WebSubPublisher:
    """Pings one hub; failures are logged and counted, never raised (the feeds are already updated)."""

    def __init__(self, hub: str, metrics: Metrics, timeout: float = 10.0) -> None:
        self._hub = hub
        self._metrics = metrics
        self._timeout = timeout

    async def feeds_changed(self, urls: Sequence[str]) -> None:
        """POST hub.mode=publish with every changed feed URL."""
        if not urls:
            return
        form = [("hub.mode", "publish"), *(("hub.url", url) for url in urls)]
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                response = await client.post(
                    self._hub, content=urlencode(form).encode(), headers={"Content-Type": _FORM}
                )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            self._metrics.websub_pings.labels(outcome="failed").inc()
            log.warning("websub ping failed", extra={"hub": self._hub, "error": str(exc)})
            return
        self._metrics.websub_pings.labels(outcome="ok").inc()
        log.info("websub ping sent", extra={"hub": self._hub, "feeds": len(urls)})

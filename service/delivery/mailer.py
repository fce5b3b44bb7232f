"""The Mailer protocol: what the dispatcher needs from a transport (SMTP pool or file outbox)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from service.models import SendResult


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message ready for the wire: envelope addresses and the serialised RFC 5322 bytes."""

    sender: str
    recipient: str
    data: bytes  # CRLF line endings, dot-stuffing left to the transport
    message_id: str
    key: str = ""  # a stable name for the message (used by the file outbox as the file name)


class Mailer(Protocol):
    """Sends one message and classifies the result; never raises for delivery failures."""

    async def send(self, envelope: Envelope) -> SendResult:
        """Attempt delivery once."""
        ...

    async def close(self) -> None:
        """Release connections and files."""
        ...

    def share(self, fraction: float) -> None:
        """Send at `fraction` of the configured rate limit (several nodes share one limit)."""
        ...

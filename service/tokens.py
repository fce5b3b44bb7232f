"""Signed, purpose-bound tokens for links in mail: no address inside, and confirm links expire.

Key rotation: tokens are signed with the current key; those signed with a previous key are accepted
until the end of its grace period (on the injected clock), then refused like any forged token.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import cast

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode, int_to_bytes

from service.clock import Clock, SystemClock
from service.files import write_atomic


class Purpose(enum.StrEnum):
    """What a token may be used for; a token for one purpose is worthless for another."""

    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"


class Tokens:
    """Makes and checks tokens carrying a subscriber id (never the address) and a generation."""

    def __init__(
        self,
        secret: str,
        previous: Sequence[str] = (),
        confirm_max_age: timedelta = timedelta(days=7),
        *,
        previous_until: datetime | None = None,
        clock: Clock | None = None,
    ):
        # itsdangerous signs with the last key and accepts every key in the list: rotation. Two sets
        # of serializers, so that when the grace period ends the previous keys are simply not tried.
        self._confirm_max_age = confirm_max_age
        self._previous_until = previous_until
        self._clock = clock or SystemClock()
        self._serializers = _serializers([secret])
        self._with_previous = _serializers([*previous, secret]) if previous else self._serializers
        # itsdangerous derives the signing key again for every token; derive it once per purpose.
        self._signing: dict[Purpose, tuple[TimestampSigner, bytes]] = {}
        for purpose, serializer in self._serializers.items():
            signer = cast(TimestampSigner, serializer.make_signer(serializer.salt))  # a timed serializer's
            self._signing[purpose] = (signer, signer.derive_key())

    def make(self, purpose: Purpose, subscriber_id: int, generation: int = 0) -> str:
        """A URL-safe token for `purpose`.

        The same bytes as `URLSafeTimedSerializer.dumps([subscriber_id, generation])` (read() checks
        them with it), made in a few microseconds instead of ~20: two tokens go into every message
        of a fan-out. A payload this short is never compressed by itsdangerous either.
        """
        signer, key = self._signing[purpose]
        payload = base64_encode(b"[%d,%d]" % (int(subscriber_id), int(generation)))
        value = payload + b"." + base64_encode(int_to_bytes(signer.get_timestamp()))
        return (value + b"." + base64_encode(signer.algorithm.get_signature(key, value))).decode("ascii")

    def read(self, purpose: Purpose, token: str) -> tuple[int, int] | None:
        """(subscriber id, generation), or None if forged, for another purpose, or expired."""
        max_age = int(self._confirm_max_age.total_seconds()) if purpose is Purpose.CONFIRM else None
        try:
            value = self._accepted()[purpose].loads(token, max_age=max_age)
        except (SignatureExpired, BadSignature):
            return None
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        ):
            return None
        return value[0], value[1]

    def _accepted(self) -> dict[Purpose, URLSafeTimedSerializer]:
        if self._previous_until is not None and self._clock.now() >= self._previous_until:
            return self._serializers
        return self._with_previous


def _serializers(keys: list[str]) -> dict[Purpose, URLSafeTimedSerializer]:
    return {purpose: URLSafeTimedSerializer(keys, salt=f"announce.{purpose}") for purpose in Purpose}


def load_or_create_secret(path: Path) -> str:
    """The secret kept in `path`, created (random, mode 0600) on first use."""
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    secret = secrets.token_urlsafe(32)
    write_atomic(path, secret.encode(), mode=0o600)
    return secret

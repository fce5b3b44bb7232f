"""Signed link tokens: key rotation with a grace period on the injected clock, and its settings."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from itsdangerous import URLSafeTimedSerializer

from service.config import load_settings
from service.errors import ConfigError
from service.tokens import Purpose, Tokens
from tests.conftest import START, FakeClock, write_config

UNTIL = START + timedelta(days=90)


@pytest.mark.parametrize("purpose", list(Purpose))
def test_a_previous_key_is_accepted_until_the_grace_period_ends_then_never(purpose: Purpose) -> None:
    clock = FakeClock()
    tokens = Tokens("new", ["older", "old"], previous_until=UNTIL, clock=clock)
    signed = {key: Tokens(key).make(purpose, 42, 3) for key in ("older", "old", "new", "unknown")}
    assert tokens.make(purpose, 42, 3) == signed["new"]  # signs with the current key only
    clock.set(UNTIL - timedelta(microseconds=1))
    assert [tokens.read(purpose, signed[k]) for k in signed] == [(42, 3), (42, 3), (42, 3), None]
    clock.set(UNTIL)
    assert [tokens.read(purpose, signed[k]) for k in signed] == [None, None, (42, 3), None]
    clock.set(UNTIL - timedelta(days=1))  # the clock is the only judge: stepping back accepts them again
    assert tokens.read(purpose, signed["old"]) == (42, 3)


def test_without_previous_keys_the_grace_period_changes_nothing() -> None:
    clock = FakeClock(UNTIL + timedelta(days=1))
    token = Tokens("key").make(Purpose.UNSUBSCRIBE, 1)
    assert Tokens("key", previous_until=UNTIL, clock=clock).read(Purpose.UNSUBSCRIBE, token) == (1, 0)


def test_previous_keys_need_the_end_of_their_grace_period(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with pytest.raises(ConfigError) as raised:
        load_settings(config, previous_secret_keys=["old"])
    assert raised.value.key == "previous_secret_keys_until"
    assert "required when previous_secret_keys is set" in raised.value.reason
    with pytest.raises(ConfigError, match="needs a time zone"):
        load_settings(config, previous_secret_keys=["old"], previous_secret_keys_until="2027-01-01T00:00:00")
    settings = load_settings(
        config, previous_secret_keys=["old"], previous_secret_keys_until="2027-01-01T00:00Z"
    )
    assert settings.previous_secret_keys_until is not None
    assert settings.previous_secret_keys_until.isoformat() == "2027-01-01T00:00:00+00:00"
    assert [key.get_secret_value() for key in settings.previous_secret_keys] == ["old"]


@pytest.mark.parametrize("purpose", list(Purpose))
@pytest.mark.parametrize(("subscriber_id", "generation"), [(1, 0), (123_456, 7), (2**62, 2**31)])
def test_tokens_are_the_bytes_itsdangerous_makes(
    purpose: Purpose, subscriber_id: int, generation: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """make() signs without itsdangerous' per-token key derivation; read() checks with itsdangerous."""
    monkeypatch.setattr(time, "time", lambda: 1_790_000_000.7)  # both sides read time.time()
    tokens = Tokens("s3cret", ["older"])
    reference = URLSafeTimedSerializer(["older", "s3cret"], salt=f"announce.{purpose}")
    made = tokens.make(purpose, subscriber_id, generation)
    assert made == reference.dumps([subscriber_id, generation])
    assert tokens.read(purpose, made) == (subscriber_id, generation)
    assert Tokens("another").read(purpose, made) is None

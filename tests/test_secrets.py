"""Secrets: the token key and the SMTP password come from the environment or a file, never config.yaml,
and are never shown: not by repr() of the settings, not in DEBUG logs of a real SMTP AUTH session,
not in the command line's error output.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from service.cli import main
from service.config import ENV_PREFIX, ENVIRONMENT_ONLY, load_settings
from service.delivery.smtp import SmtpOptions
from service.errors import ConfigError
from service.runtime import build
from service.tokens import Purpose, Tokens
from tests.conftest import REPO, write_config
from tests.delivery.smtpd import smtp_server

SAMPLE = REPO / "announcements" / "2020-02-12-carnot-label.md"
KEY = "key-5f0c2a9e-never-shown"
PASSWORD = "pw-8d41b7-never-shown"
SECRETS = {"secret_key": KEY, "smtp_password": PASSWORD}


def encoded_forms(secret: str) -> set[str]:
    """The secret as it may travel: plain, and in base64 at each alignment (AUTH PLAIN and LOGIN)."""
    forms = {secret}
    for prefix in ("", "\0user\0", "x", "xy"):
        encoded = base64.b64encode((prefix + secret).encode()).decode().rstrip("=")
        # Characters that depend on the prefix or on the padding are dropped: what is left can only
        # come from the secret itself.
        start = (len(prefix) + 2) // 3 * 4
        forms.add(encoded[start : start + len(secret)] if prefix else encoded[: len(secret)])
    return {form for form in forms if len(form) >= 8}


def assert_never_shown(text: str) -> None:
    for secret in SECRETS.values():
        for form in encoded_forms(secret):
            assert form not in text, f"a secret ({form!r}) was shown"


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No secret setting left over from the environment the tests were started in."""
    for key in (*ENVIRONMENT_ONLY, "secret_key_file", "smtp_password_file", "previous_secret_keys"):
        monkeypatch.delenv(f"{ENV_PREFIX}{key.upper()}", raising=False)
    return monkeypatch


@pytest.fixture
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """configure_logging() replaces the root handlers in place: give it a copy, restore the levels.

    The test server's own logger ("mail.log", aiosmtpd) writes every line the client sends, AUTH
    included, at DEBUG: it is the test's server, not the service, so it is kept quiet.
    """
    root, server_log = logging.getLogger(), logging.getLogger("mail.log")
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    levels = root.level, server_log.level
    server_log.setLevel(logging.WARNING)
    yield
    root.setLevel(levels[0])
    server_log.setLevel(levels[1])


# --- where secrets may come from -----------------------------------------------------------------


@pytest.mark.parametrize("key", ENVIRONMENT_ONLY)
def test_a_secret_written_in_config_yaml_is_refused_naming_the_ways_to_give_it(
    tmp_path: Path, clean_environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], key: str
) -> None:
    config = write_config(tmp_path, **{key: SECRETS[key]})
    with pytest.raises(ConfigError) as raised:
        load_settings(config)
    assert raised.value.key == key
    assert f"{ENV_PREFIX}{key.upper()}" in raised.value.reason
    assert f"{key}_file" in raised.value.reason
    # The same through the command line: status 2, the way out named, the secret not echoed.
    assert main(["status", "--config", str(config)]) == 2
    out = capsys.readouterr()
    assert f"config key '{key}'" in out.err
    assert f"{ENV_PREFIX}{key.upper()}" in out.err
    assert_never_shown(out.out + out.err + str(raised.value))


def test_empty_secret_keys_left_in_an_old_config_yaml_are_fine(
    tmp_path: Path, clean_environment: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, secret_key=None, smtp_password="")
    settings = load_settings(config)
    assert (settings.secret_key_value, settings.smtp_password_value) == (None, None)


def test_the_environment_still_gives_both_secrets(
    tmp_path: Path, clean_environment: pytest.MonkeyPatch
) -> None:
    clean_environment.setenv("ANNOUNCE_SECRET_KEY", KEY)
    clean_environment.setenv("ANNOUNCE_SMTP_PASSWORD", PASSWORD)
    settings = load_settings(write_config(tmp_path))
    assert (settings.secret_key_value, settings.smtp_password_value) == (KEY, PASSWORD)


def test_secret_files_are_read_at_start_relative_to_the_config_file(
    tmp_path: Path, clean_environment: pytest.MonkeyPatch
) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "key").write_text(f"{KEY}\n")
    (tmp_path / "secrets" / "smtp").write_text(f"  {PASSWORD}\r\n")
    config = write_config(tmp_path, secret_key_file="secrets/key", smtp_password_file="secrets/smtp")
    settings = load_settings(config)
    assert (settings.secret_key_value, settings.smtp_password_value) == (KEY, PASSWORD)
    parts = build(settings)
    try:  # links are signed with the key from the file
        token = parts.tokens.make(Purpose.UNSUBSCRIBE, 7)
        assert Tokens(KEY).read(Purpose.UNSUBSCRIBE, token) == (7, 0)
    finally:
        asyncio.run(parts.close())


@pytest.mark.parametrize(("content", "problem"), [(None, "cannot read"), ("  \n", "is empty")])
def test_a_missing_or_empty_secret_file_stops_the_start_naming_the_setting(
    tmp_path: Path, clean_environment: pytest.MonkeyPatch, content: str | None, problem: str
) -> None:
    if content is not None:
        (tmp_path / "key").write_text(content)
    with pytest.raises(ConfigError) as raised:
        load_settings(write_config(tmp_path, secret_key_file="key"))
    assert raised.value.key == "secret_key_file"
    assert problem in raised.value.reason


def test_a_secret_from_both_the_environment_and_a_file_is_refused(
    tmp_path: Path, clean_environment: pytest.MonkeyPatch
) -> None:
    (tmp_path / "password").write_text(PASSWORD)
    clean_environment.setenv("ANNOUNCE_SMTP_PASSWORD", "another")
    with pytest.raises(ConfigError) as raised:
        load_settings(write_config(tmp_path, smtp_password_file="password"))
    assert raised.value.key == "smtp_password_file"
    assert "not both" in raised.value.reason


def test_repr_and_str_of_the_settings_and_smtp_options_never_show_secrets(
    tmp_path: Path, clean_environment: pytest.MonkeyPatch
) -> None:
    clean_environment.setenv("ANNOUNCE_SECRET_KEY", KEY)
    clean_environment.setenv("ANNOUNCE_SMTP_PASSWORD", PASSWORD)
    clean_environment.setenv("ANNOUNCE_PREVIOUS_SECRET_KEYS", f'["{KEY}-old"]')
    clean_environment.setenv("ANNOUNCE_PREVIOUS_SECRET_KEYS_UNTIL", "2027-01-01T00:00:00Z")
    settings = load_settings(write_config(tmp_path))
    shown = [repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump())]
    shown.append(repr(SmtpOptions(username="user", password=PASSWORD)))
    assert_never_shown("\n".join(shown))
    assert "**********" in repr(settings)


def test_config_yaml_lists_no_secret() -> None:
    listed = yaml.safe_load((REPO / "config.yaml").read_text())
    assert not set(ENVIRONMENT_ONLY) & set(listed)
    assert {"secret_key_file", "smtp_password_file"} <= set(listed)


# --- nothing shows them: DEBUG logs of a real SMTP AUTH session, error output ---------------------


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_debug_logs_of_a_real_smtp_auth_session_never_show_the_password_or_the_key(
    tmp_path: Path,
    clean_environment: pytest.MonkeyPatch,
    restore_logging: None,
    capsys: pytest.CaptureFixture[str],
    log_format: str,
) -> None:
    clean_environment.setenv("ANNOUNCE_SECRET_KEY", KEY)
    clean_environment.setenv("ANNOUNCE_SMTP_PASSWORD", PASSWORD)
    async with smtp_server() as server:
        server.require_auth("press", PASSWORD)
        config = write_config(
            tmp_path, mail_transport="smtp", smtp_port=server.port, smtp_username="press",
            mail_from="press@example.org", log_level="DEBUG", smtp_timeout=5, log_format=log_format,
        )  # fmt: skip
        # The command runs its own event loop: in a thread, while this loop serves SMTP.
        argv = ["send", "--config", str(config), "--test-to", "editor@example.org", str(SAMPLE)]
        status = await asyncio.to_thread(main, argv)
    out = capsys.readouterr()
    assert status == 0, out
    assert server.logins == [("press", True)]
    assert len(server.messages) == 1
    assert "DEBUG" in out.err or '"debug"' in out.err  # DEBUG logging was on, and wrote lines
    assert_never_shown(out.out + out.err)


async def test_a_refused_smtp_login_is_reported_without_the_password(
    tmp_path: Path,
    clean_environment: pytest.MonkeyPatch,
    restore_logging: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clean_environment.setenv("ANNOUNCE_SECRET_KEY", KEY)
    clean_environment.setenv("ANNOUNCE_SMTP_PASSWORD", PASSWORD)
    async with smtp_server() as server:
        server.require_auth("press", "the-right-one")
        config = write_config(
            tmp_path, mail_transport="smtp", smtp_port=server.port, smtp_username="press",
            mail_from="press@example.org", log_level="DEBUG", smtp_timeout=5,
        )  # fmt: skip
        argv = ["send", "--config", str(config), "--test-to", "editor@example.org", str(SAMPLE)]
        status = await asyncio.to_thread(main, argv)
    out = capsys.readouterr()
    assert status == 1
    assert server.logins
    assert set(server.logins) == {("press", False)}
    assert "535" in out.out + out.err  # the server's refusal is shown ...
    assert_never_shown(out.out + out.err)  # ... but not what was refused


def test_command_line_errors_about_secret_settings_do_not_echo_them(
    tmp_path: Path, clean_environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_environment.setenv("ANNOUNCE_SECRET_KEY", KEY)
    clean_environment.setenv("ANNOUNCE_PREVIOUS_SECRET_KEYS", f"not json {PASSWORD}")
    assert main(["status", "--config", str(write_config(tmp_path))]) == 2
    clean_environment.setenv("ANNOUNCE_PREVIOUS_SECRET_KEYS", f'["{PASSWORD}"]')  # no grace period set
    assert main(["status", "--config", str(write_config(tmp_path))]) == 2
    out = capsys.readouterr()
    assert "previous_secret_keys" in out.err
    assert "previous_secret_keys_until" in out.err
    assert_never_shown(out.out + out.err)

"""Operator settings: the only reader of config.yaml and of ANNOUNCE_* environment variables."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from service.errors import ConfigError

ENV_PREFIX = "ANNOUNCE_"
DEFAULT_CONFIG_FILE = Path("config.yaml")
# Secrets: from the environment (or the `<key>_file` setting), never from config.yaml, which is
# copied, committed and shown around far more often than an environment or a 0600 file.
ENVIRONMENT_ONLY = ("secret_key", "smtp_password")
# Characters that end a header line somewhere (str.splitlines() breaks at each of them, and so does
# the email package), or that no header may carry: refused in the settings that go into mail headers.
_LINE_BREAKING = frozenset("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


class Settings(BaseSettings):
    """Every operator setting, with its default and help text (docs/configuration.md mirrors it)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    # Site
    site_title: str = Field("Press releases", description="Title of the site, the feeds and the archive.")
    site_description: str = Field(
        "Press releases and announcements.", description="One-line description used in feeds."
    )
    site_author: str = Field(
        "Press office", description="Author shown when a release names none (feeds, JSON-LD)."
    )
    base_url: str = Field(
        "http://127.0.0.1:8000",
        description="Public URL of the site; every absolute link in feeds and pages starts with it.",
    )
    timezone: str = Field(
        "UTC", description="IANA time zone: dates without a time mean midnight here; pages show it."
    )
    default_language: str = Field("en", description="Language of releases that do not set `lang`.")
    languages: list[str] = Field(
        default_factory=lambda: ["en", "fr"],
        description="Languages the site publishes in: per-language feeds and file name suffixes "
        "(carnot.fr.md).",
    )
    # Folders and storage
    announcements_dir: Path = Field(
        Path("announcements"), description="The drop folder the service watches (read only)."
    )
    data_dir: Path = Field(Path("var"), description="Where the service keeps its own state.")
    templates_dir: Path = Field(Path("templates"), description="Jinja2 templates (web/ and email/).")
    database_url: str | None = Field(
        None,
        description="SQLAlchemy async URL; empty means SQLite at <data_dir>/announce.db. "
        "PostgreSQL: postgresql+asyncpg://user@host/db.",
    )
    # HTTP
    http_host: str = Field("127.0.0.1", description="Address the HTTP server listens on.")
    http_port: int = Field(8000, ge=0, le=65535, description="Port the HTTP server listens on.")
    # Feeds and archive
    feed_size: int = Field(50, ge=1, le=10_000, description="Newest releases carried by each feed.")
    page_size: int = Field(20, ge=1, le=500, description="Releases per archive page.")
    websub_hub: str | None = Field(
        None,
        description="WebSub hub URL; when set, feeds advertise it and each publication pings it.",
    )
    view_cache_seconds: float = Field(
        1.0,
        ge=0,
        description="Pages and feeds ask the database whether the site changed at most this often: a "
        "change made by another node shows within this many seconds, this node's own at once.",
    )
    # Ingest and scheduling
    scan_interval: float = Field(
        60.0,
        gt=0,
        description="Seconds between full rescans of the folder (safety net for the watcher).",
    )
    heartbeat_seconds: float = Field(
        10.0,
        gt=0,
        description="How often a running node records that it is alive (announce status lists the nodes "
        "seen in the last three heartbeats).",
    )
    settle_seconds: float = Field(
        0.5,
        ge=0,
        description="A file is read only once it was last modified at least this long ago.",
    )
    embargo_grace_minutes: float = Field(
        30.0,
        gt=0,
        description="A release whose embargo passed longer ago than this while the service was down is "
        "held for an operator (announce release ID) instead of being published and mailed late.",
    )
    max_file_bytes: int = Field(5_000_000, ge=1, description="Release files larger than this are refused.")
    max_pages: int = Field(100, ge=1, description="PDF releases with more pages are refused.")
    extract_seconds: float = Field(
        20.0, gt=0, description="Time limit on extracting the text of one PDF release (in a child process)."
    )
    # Subscribers
    secret_key: SecretStr | None = Field(
        None,
        description="Signs confirm, unsubscribe and preferences links. Only from the environment "
        "(ANNOUNCE_SECRET_KEY) or secret_key_file, never config.yaml; neither: a random key is created "
        "once in <data_dir>/secret_key.",
    )
    secret_key_file: Path | None = Field(
        None, description="A file holding secret_key (read at start, surrounding whitespace ignored)."
    )
    previous_secret_keys: list[SecretStr] = Field(
        [],
        description="Keys still accepted, until previous_secret_keys_until, for links in mail already "
        "sent (key rotation).",
    )
    previous_secret_keys_until: datetime | None = Field(
        None,
        validate_default=True,
        description="End of the grace period of previous_secret_keys (ISO 8601 with a time zone); "
        "required when they are set.",
    )
    confirm_token_hours: float = Field(168.0, gt=0, description="Lifetime of a confirmation link, in hours.")
    confirmation_window_minutes: float = Field(
        60.0, ge=0, description="At most one confirmation mail per address in this many minutes."
    )
    subscribe_rate_limit: int = Field(
        10, ge=1, description="Subscription requests accepted per client address per minute."
    )
    link_rate_limit: int = Field(
        60,
        ge=1,
        description="Requests to confirm, unsubscribe and preferences links accepted per client address "
        "per minute.",
    )
    max_request_bytes: int = Field(
        32_768, ge=1024, description="Largest request body accepted (forms, the JSON API); larger: 413."
    )
    # Mail
    mail_transport: Literal["outbox", "smtp"] = Field(
        "outbox", description="`outbox`: write .eml files to outbox_dir; `smtp`: send through smtp_host."
    )
    mail_from: str = Field("press@localhost", description="Sender address of every mail (envelope and From).")
    mail_from_name: str | None = Field(None, description="Display name in From; empty: the site title.")
    outbox_dir: Path | None = Field(None, description="Folder of the file outbox; empty: <data_dir>/outbox.")
    smtp_host: str = Field("127.0.0.1", description="SMTP relay host.")
    smtp_port: int = Field(25, ge=1, le=65535, description="SMTP relay port.")
    smtp_security: Literal["none", "starttls", "tls"] = Field(
        "none", description="`starttls` (port 587), `tls` (port 465) or `none` (a local relay)."
    )
    smtp_username: str | None = Field(None, description="SMTP AUTH user; empty: no authentication.")
    smtp_password: SecretStr | None = Field(
        None,
        description="SMTP AUTH password. Only from the environment (ANNOUNCE_SMTP_PASSWORD) or "
        "smtp_password_file, never config.yaml.",
    )
    smtp_password_file: Path | None = Field(
        None, description="A file holding smtp_password (read at start, surrounding whitespace ignored)."
    )
    smtp_timeout: float = Field(30.0, gt=0, description="Seconds to wait for each SMTP reply.")
    smtp_pool_size: int = Field(4, ge=1, le=100, description="Persistent SMTP connections at most.")
    smtp_rate_limit: float = Field(0.0, ge=0, description="Messages per second at most; 0: no limit.")
    smtp_rate_scope: Literal["node", "cluster"] = Field(
        "node",
        description="node: smtp_rate_limit is per node; cluster: for all nodes together, each taking "
        "an equal share of it (the nodes seen by the heartbeats).",
    )
    dkim_key_file: Path | None = Field(
        None, description="Private key to DKIM-sign mail (RSA PEM, or dkimpy's Ed25519); empty: no signature."
    )
    dkim_selector: str = Field("announce", description="DKIM selector (the DNS name <selector>._domainkey).")
    # Delivery
    retry_horizon_hours: float = Field(
        72.0, gt=0, description="Temporary failures are retried, with backoff, for this long."
    )
    unknown_policy: Literal["retry", "hold"] = Field(
        "retry",
        description="After a connection lost once the message was sent: `retry` (at-least-once, a "
        "possible duplicate) or `hold` (at-most-once; shown in status for an operator).",
    )
    bulletin_attach_max_bytes: int = Field(
        0,
        ge=0,
        description="Attachments up to this size are attached to bulletins as well as linked; larger "
        "ones are only linked. 0: only links.",
    )
    bulletin_max_age_days: float = Field(
        7.0, ge=0, description="Releases dated further back than this are published without a bulletin."
    )
    dispatch_batch: int = Field(50, ge=1, le=5000, description="Ledger rows claimed per dispatcher batch.")
    lease_seconds: float = Field(
        120.0, gt=0, description="A claimed batch not finished in this time is reclaimed (node died)."
    )
    digest_time: str = Field("08:00", description="Local time (HH:MM) daily and weekly digests are sent.")
    weekly_digest_day: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] = Field(
        "mon", description="Day of the weekly digest."
    )
    # Logging
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Least severe log level written."
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="`text`: one key=value event per line; `json`: one JSON object per line.",
    )

    @field_validator("base_url")
    @classmethod
    def _absolute_http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL, e.g. https://press.example.org")
        return value.rstrip("/")

    @field_validator("site_title", "mail_from_name")
    @classmethod
    def _one_header_line(cls, value: str | None) -> str | None:
        # Both go into mail headers (List-Id, From, subjects): a line break there would either be
        # refused by the email package at send time, or start a header of the operator's choosing.
        if value is not None and any(c in _LINE_BREAKING or c == "\x00" for c in value):
            raise ValueError("must be one line, without control characters")
        return value

    @field_validator("secret_key_file", "smtp_password_file")
    @classmethod
    def _secret_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        key = (info.field_name or "").removesuffix("_file")
        given = info.data.get(key)
        if isinstance(given, SecretStr) and given.get_secret_value():
            raise ValueError(f"set either {ENV_PREFIX}{key.upper()} or {key}_file, not both")
        read_secret_file(value)  # at start: a missing or empty file stops the service now
        return value

    @field_validator("previous_secret_keys_until")
    @classmethod
    def _grace_period(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError("needs a time zone, e.g. 2027-01-31T00:00:00Z")
        if value is None and info.data.get("previous_secret_keys"):
            raise ValueError(
                "required when previous_secret_keys is set: the moment links signed with the previous "
                "keys stop working, e.g. 90 days after the rotation"
            )
        return value

    @field_validator("websub_hub")
    @classmethod
    def _hub_url(cls, value: str | None) -> str | None:
        if value and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http(s) URL")
        return value or None

    @field_validator("mail_from")
    @classmethod
    def _address(cls, value: str) -> str:
        local, _, domain = value.partition("@")
        if not local or not domain or any(c in value for c in " <>\r\n"):
            raise ValueError("must be a plain address such as press@example.org")
        return value

    @field_validator("digest_time")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        hours, _, minutes = value.partition(":")
        if not (hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60):
            raise ValueError("must be a time such as 08:00")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Paris") from None
        return value

    @field_validator("languages")
    @classmethod
    def _language_codes(cls, value: list[str]) -> list[str]:
        codes = list(dict.fromkeys(code.strip().lower() for code in value))
        bad = [code for code in codes if not (code.isascii() and code.isalpha() and 2 <= len(code) <= 3)]
        if bad or not codes:
            raise ValueError("must list primary language codes such as en and fr")
        return codes

    @property
    def site_languages(self) -> list[str]:
        """The configured languages, the default language first."""
        default = self.default_language.split("-")[0].lower()
        return [default, *(code for code in self.languages if code != default)]

    @property
    def tz(self) -> ZoneInfo:
        """The configured time zone."""
        return ZoneInfo(self.timezone)

    @property
    def secret_key_value(self) -> str | None:
        """The link-signing key from the environment or secret_key_file; None if neither is set."""
        return _secret(self.secret_key, self.secret_key_file, "secret_key_file")

    @property
    def smtp_password_value(self) -> str | None:
        """The SMTP AUTH password from the environment or smtp_password_file; None if neither is set."""
        return _secret(self.smtp_password, self.smtp_password_file, "smtp_password_file")

    @property
    def effective_database_url(self) -> str:
        """The database URL, defaulting to SQLite under data_dir."""
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'announce.db'}"

    @property
    def effective_outbox_dir(self) -> Path:
        """The file outbox folder."""
        return self.outbox_dir or self.data_dir / "outbox"

    @property
    def mail_domain(self) -> str:
        """The domain of mail_from, used in Message-ID and List-Id."""
        return self.mail_from.rpartition("@")[2]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Command-line options beat the environment, which beats config.yaml.
        return init_settings, env_settings, _FileSource(settings_cls, _FileSource.pending)


class _FileSource(PydanticBaseSettingsSource):
    """Values read from config.yaml, handed over by load_settings()."""

    pending: dict[str, Any] = {}  # noqa: RUF012 - set for the duration of one load_settings() call

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def read_secret_file(path: Path) -> str:
    """The secret held in `path`, without surrounding whitespace (a trailing newline, typically)."""
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        # Never the content: only where it is and why it cannot be read.
        raise ValueError(
            f"cannot read {path}: {getattr(exc, 'strerror', None) or 'not UTF-8 text'}"
        ) from None
    if not secret:
        raise ValueError(f"{path} is empty")
    return secret


def _secret(value: SecretStr | None, file: Path | None, file_key: str) -> str | None:
    if value is not None and value.get_secret_value():
        return value.get_secret_value()
    if file is None:
        return None
    try:
        return read_secret_file(file)
    except ValueError as exc:  # the file changed since the settings were loaded
        raise ConfigError(file_key, str(exc)) from None


def _refuse_secrets(data: dict[str, Any], path: Path) -> None:
    for key in ENVIRONMENT_ONLY:
        if data.get(key) not in (None, ""):
            # Name the way out, never the value (it is on its way to a terminal or a log).
            raise ConfigError(
                key,
                f"secrets are not read from {path.name}: set the environment variable "
                f"{ENV_PREFIX}{key.upper()}, or name a file holding it with {key}_file",
            )


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("--config", f"cannot read {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError("--config", f"{path}{where} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("--config", f"{path} must be a mapping of keys to values")
    return data


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    # Relative folders in a config file mean "next to that file", so --config works from anywhere.
    resolved = dict(data)
    for key in (
        "announcements_dir", "data_dir", "templates_dir", "outbox_dir", "dkim_key_file", "secret_key_file",
        "smtp_password_file",
    ):  # fmt: skip
        value = resolved.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            resolved[key] = str(base / value)
    return resolved


def load_settings(config_path: Path | None = None, **overrides: Any) -> Settings:
    """Load settings from a YAML file (default ./config.yaml if present), the environment and overrides."""
    path = config_path if config_path is not None else DEFAULT_CONFIG_FILE
    data: dict[str, Any] = {}
    if config_path is not None or path.exists():
        data = _read_file(path)
        _refuse_secrets(data, path)
        data = _resolve_paths(data, path.parent)
    _FileSource.pending = data
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"]) or "config"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key (check the spelling against docs/configuration.md)"
        raise ConfigError(key, message) from None
    except SettingsError as exc:
        # An environment variable that is not the JSON its setting needs; say which, never its value.
        raise ConfigError("environment", f'{exc} (lists and objects are JSON, e.g. \'["a", "b"]\')') from None
    finally:
        _FileSource.pending = {}


def describe_settings() -> list[tuple[str, object, str]]:
    """Return (key, default, description) for every setting, in declaration order."""
    return [(name, field.default, field.description or "") for name, field in Settings.model_fields.items()]

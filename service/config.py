"""Operator settings: the only reader of config.yaml and of ANNOUNCE_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from service.errors import ConfigError

ENV_PREFIX = "ANNOUNCE_"
DEFAULT_CONFIG_FILE = Path("config.yaml")


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
    # Ingest and scheduling
    scan_interval: float = Field(
        60.0,
        gt=0,
        description="Seconds between full rescans of the folder (safety net for the watcher).",
    )
    settle_seconds: float = Field(
        0.5,
        ge=0,
        description="A file must keep the same size and mtime this long before it is read.",
    )
    max_file_bytes: int = Field(5_000_000, ge=1, description="Release files larger than this are refused.")
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

    @field_validator("websub_hub")
    @classmethod
    def _hub_url(cls, value: str | None) -> str | None:
        if value and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http(s) URL")
        return value or None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Paris") from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        """The configured time zone."""
        return ZoneInfo(self.timezone)

    @property
    def effective_database_url(self) -> str:
        """The database URL, defaulting to SQLite under data_dir."""
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'announce.db'}"

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
    for key in ("announcements_dir", "data_dir", "templates_dir"):
        value = resolved.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            resolved[key] = str(base / value)
    return resolved


def load_settings(config_path: Path | None = None, **overrides: Any) -> Settings:
    """Load settings from a YAML file (default ./config.yaml if present), the environment and overrides."""
    path = config_path if config_path is not None else DEFAULT_CONFIG_FILE
    data: dict[str, Any] = {}
    if config_path is not None or path.exists():
        data = _resolve_paths(_read_file(path), path.parent)
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
    finally:
        _FileSource.pending = {}


def describe_settings() -> list[tuple[str, object, str]]:
    """Return (key, default, description) for every setting, in declaration order."""
    return [(name, field.default, field.description or "") for name, field in Settings.model_fields.items()]

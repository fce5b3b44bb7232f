"""Database tables, shared by SQLite and PostgreSQL; Alembic migrations must produce exactly this."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend (SQLite stores naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


releases = Table(
    "releases",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("guid", String(400), nullable=False),
    Column("source", String(1024), nullable=False),
    Column("title", Text, nullable=False),
    Column("summary", Text, nullable=False),
    Column("body_html", Text, nullable=False),
    Column("author", String(200)),
    Column("lang", String(35), nullable=False),
    Column("topics", JSON, nullable=False),
    Column("attachments", JSON, nullable=False),
    Column("date", UTCDateTime, nullable=False),
    Column("publish_at", UTCDateTime),
    Column("content_hash", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("published_at", UTCDateTime),
    Column("withdrawn_at", UTCDateTime),
    Column("fanout_at", UTCDateTime),  # when bulletins were queued; NULL: still to do
    Column("contacts", JSON),  # NULL: none
    Column("doi", String(256)),
    Column("link", String(2000)),
    Column("held_at", UTCDateTime),  # when a missed embargo put it on hold for an operator
    Column("translation_key", String(128), nullable=False),  # shared by the language versions of one release
    Column("language", String(8), nullable=False),  # primary subtag of lang, for per-language feeds
    Column("correction", Text),
    Column("corrected_at", UTCDateTime),
    Column("correction_fanout_at", UTCDateTime),  # when notices for the current correction were queued
    Index(None, "state", "date"),
    Index(None, "source"),
    Index(None, "translation_key"),
)

release_topics = Table(
    "release_topics",
    metadata,
    Column("release_id", String(128), ForeignKey("releases.id", ondelete="CASCADE"), primary_key=True),
    Column("topic", String(64), primary_key=True),
    Index(None, "topic"),
)

sources = Table(
    "sources",
    metadata,
    Column("path", String(1024), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("deps", JSON),  # [[path, size, mtime_ns], ...] of the attachments the file lists
    Column("release_id", String(128)),
    Column("error_reason", Text),
    Column("error_line", Integer),
    Column("error_hint", Text),
    Column("checked_at", UTCDateTime, nullable=False),
)

site_state = Table(
    "site_state",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("revision", BigInteger, nullable=False),
    Column("changed_at", UTCDateTime, nullable=False),
    Column("last_scan_at", UTCDateTime),
    Column("last_scan_seconds", Float),
    Column("last_scan_files", Integer),
    Column("last_scan_problems", Integer),
)

nodes = Table(
    "nodes",
    metadata,
    Column("name", String(100), primary_key=True),  # host:pid
    Column("started_at", UTCDateTime, nullable=False),
    Column("seen_at", UTCDateTime, nullable=False),  # the last heartbeat
    Column("activity", Text, nullable=False),
)

job_runs = Table(
    "job_runs",
    metadata,
    Column("job", String(100), primary_key=True),  # e.g. digest:daily
    Column("run", String(100), primary_key=True),  # which run, e.g. the day
    Column("node", String(100), nullable=False),
    Column("claimed_at", UTCDateTime, nullable=False),
)

subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False, unique=True),  # lowercased domain, as validated
    Column("state", String(16), nullable=False),
    Column("all_topics", Boolean, nullable=False),
    Column("lang", String(35), nullable=False),
    Column("frequency", String(16), nullable=False),
    Column("generation", Integer, nullable=False),
    Column("consent_method", String(16), nullable=False),
    Column("consent_source", Text, nullable=False),
    Column("consent_at", UTCDateTime, nullable=False),
    Column("consent_ip", String(64)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("confirmed_at", UTCDateTime),
    Column("unsubscribed_at", UTCDateTime),
    Column("bounced_at", UTCDateTime),
    Column("confirmation_sent_at", UTCDateTime),
    Column("last_digest_at", UTCDateTime),
    Index(None, "state", "frequency"),
)

subscriber_topics = Table(
    "subscriber_topics",
    metadata,
    Column("subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True),
    Column("topic", String(64), primary_key=True),
    Index(None, "topic"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("key", String(200), nullable=False),  # what is sent, e.g. bulletin:<release id>
    Column("release_id", String(128)),
    Column("release_version", Integer),
    Column("payload", JSON),  # digests: the ids of the releases they carry
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("claimed_by", String(100)),  # the node holding the row, or that made the last attempt
    Column("claimed_until", UTCDateTime),
    Column("message_id", String(300)),
    Column("reply", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    UniqueConstraint("subscriber_id", "key"),
    Index(None, "state", "next_attempt_at"),
    Index(None, "release_id", "kind"),
)

"""Plain data that flows between stages: frozen dataclasses, no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file shipped with a release (a PDF, an image), stored next to it in the inbox."""

    name: str  # file name as published, unique within its release
    path: str  # path relative to the announcements folder
    content_type: str
    length: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Contact:
    """A press contact named by a release."""

    name: str
    role: str | None = None
    email: str | None = None
    phone: str | None = None


@dataclass(frozen=True, slots=True)
class Announcement:
    """A release as parsed from one file, before the store gives it a version and a state."""

    id: str
    title: str
    date: datetime  # aware; the release's own date, shown as "published"
    body_html: str  # sanitised HTML
    summary: str  # plain text
    source: str  # path of the file, relative to the announcements folder
    lang: str
    topics: tuple[str, ...] = ()
    author: str | None = None
    publish_at: datetime | None = None  # embargo: invisible everywhere until then
    attachments: tuple[Attachment, ...] = ()
    draft: bool = False
    correction: str | None = None  # a note saying what an edit corrected; mailed to earlier recipients
    contacts: tuple[Contact, ...] = ()
    doi: str | None = None  # e.g. 10.1234/abcd, of the paper a release announces
    link: str | None = None  # an absolute http(s) URL for further information
    translation_of: str | None = None  # id of the release this one translates (its translation key)

    @property
    def translation_key(self) -> str:
        """What all language versions of one release share: the original's id."""
        return self.translation_of or self.id

    @property
    def language(self) -> str:
        """The primary language subtag, lowercased ("fr" for "fr-CA")."""
        return self.lang.split("-")[0].lower()


class ReleaseState(enum.StrEnum):
    """Where a stored release is in its life."""

    SCHEDULED = "scheduled"  # stored, embargoed until publish_at
    PUBLISHED = "published"  # visible on feeds and pages
    HELD = "held"  # its embargo passed while the service was down: waits for `announce release ID`
    WITHDRAWN = "withdrawn"  # its file was deleted (or made a draft again)


@dataclass(frozen=True, slots=True)
class Release:
    """A stored release: the announcement plus what the store knows about it."""

    announcement: Announcement
    guid: str  # feed entry id, fixed at first insert and never changed
    version: int
    state: ReleaseState
    content_hash: str
    updated: datetime  # the release date for version 1, then the time of each content change
    published_at: datetime | None = None  # when it became visible
    corrected_at: datetime | None = None  # when the current correction note first appeared

    @property
    def id(self) -> str:
        """The release's stable id (used in URLs)."""
        return self.announcement.id


@dataclass(frozen=True, slots=True)
class ReleasePage:
    """One page of the archive."""

    releases: tuple[Release, ...]
    number: int  # 1-based
    total_pages: int
    total_releases: int


@dataclass(frozen=True, slots=True)
class FileProblem:
    """A release file that could not be ingested, as kept for status and health reports."""

    source: str
    reason: str
    line: int | None = None
    hint: str = ""


@dataclass(frozen=True, slots=True)
class ScanReport:
    """What one pass over the announcements folder did."""

    files: int = 0
    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    withdrawn: tuple[str, ...] = ()
    published: tuple[str, ...] = ()
    unchanged: int = 0
    deferred: tuple[str, ...] = ()  # still being written; picked up on a later pass
    problems: tuple[FileProblem, ...] = field(default=())
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        """True when anything visible may have changed."""
        return bool(self.created or self.updated or self.withdrawn or self.published)


@dataclass(frozen=True, slots=True)
class SiteVersion:
    """Changes whenever anything visible on the site changes; caches and Last-Modified use it."""

    revision: int
    changed_at: datetime


class SubscriberState(enum.StrEnum):
    """Where a subscriber is in the double opt-in life cycle."""

    PENDING = "pending"  # asked to subscribe; nothing is sent but the confirmation
    CONFIRMED = "confirmed"  # followed the confirmation link
    UNSUBSCRIBED = "unsubscribed"  # never mailed again unless they subscribe and confirm anew
    BOUNCED = "bounced"  # a permanent failure; suppressed like an unsubscribe


class Frequency(enum.StrEnum):
    """How often a subscriber wants mail."""

    IMMEDIATE = "immediate"
    DAILY = "daily"
    WEEKLY = "weekly"


@dataclass(frozen=True, slots=True)
class Consent:
    """How, when and from where an address was subscribed (kept as the record of consent)."""

    method: str  # web, api, cli, import
    source: str  # form URL, file name, operator note
    at: datetime
    ip: str | None = None


@dataclass(frozen=True, slots=True)
class Subscriber:
    """One address and its preferences."""

    id: int
    email: str
    state: SubscriberState
    lang: str
    frequency: Frequency
    consent: Consent
    created_at: datetime
    topics: tuple[str, ...] = ()  # empty: every topic
    generation: int = 1  # bumped by each new subscription request; confirm tokens carry it
    confirmed_at: datetime | None = None
    unsubscribed_at: datetime | None = None
    bounced_at: datetime | None = None


class DeliveryKind(enum.StrEnum):
    """What a ledger row sends."""

    CONFIRMATION = "confirmation"
    BULLETIN = "bulletin"
    DIGEST = "digest"
    CORRECTION = "correction"


class DeliveryState(enum.StrEnum):
    """Where a ledger row is."""

    QUEUED = "queued"
    SENT = "sent"
    RETRY = "retry"  # temporary failure; next attempt scheduled
    UNKNOWN = "unknown"  # connection lost after the message data was sent: the server may have it
    FAILED = "failed"  # permanent failure, or retries exhausted
    SKIPPED = "skipped"  # the subscriber left (or confirmed) before it was sent


class Outcome(enum.StrEnum):
    """What one send attempt told us."""

    SENT = "sent"  # 2xx after DATA
    TEMPORARY = "temporary"  # 4xx, refused connection, timeout before DATA
    PERMANENT = "permanent"  # 5xx at RCPT or DATA
    UNKNOWN = "unknown"  # disconnect or timeout after DATA was sent


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of one attempt, with the server's words."""

    outcome: Outcome
    reply: str = ""

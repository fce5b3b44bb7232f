"""Releases: upsert by stable id and content hash, publication state, and the queries pages and feeds need."""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from service.errors import DuplicateIdError
from service.models import Announcement, Attachment, Contact, Release, ReleasePage, ReleaseState, SiteVersion
from service.store.database import Database
from service.store.schema import release_topics, releases, site_state


class Change(enum.StrEnum):
    """What an upsert did."""

    CREATED = "created"
    UPDATED = "updated"  # content changed: new version
    RESTORED = "restored"  # a withdrawn release came back unchanged
    MOVED = "moved"  # same content, new file name
    UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True)
class UpsertResult:
    """The outcome of storing one announcement."""

    change: Change
    release_id: str
    version: int
    state: ReleaseState
    previous_topics: tuple[str, ...] = ()  # before an edit: their topic feeds changed too


def content_hash(announcement: Announcement) -> str:
    """Hash of everything readers see; the file name is not content, so a rename is not an edit.

    Fields left at their default are not hashed, so that a new optional field does not make every
    stored release look edited after an upgrade.
    """
    fields = {
        name: value
        for name, value in asdict(announcement).items()
        if name != "source" and value not in (None, (), [], False)
    }
    blob = json.dumps(fields, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def _row_values(ann: Announcement, digest: str) -> dict[str, Any]:
    return {
        "source": ann.source,
        "title": ann.title,
        "summary": ann.summary,
        "body_html": ann.body_html,
        "author": ann.author,
        "lang": ann.lang,
        "topics": list(ann.topics),
        "attachments": [asdict(a) for a in ann.attachments],
        "date": ann.date,
        "publish_at": ann.publish_at,
        "correction": ann.correction,
        "contacts": [asdict(c) for c in ann.contacts] or None,
        "doi": ann.doi,
        "link": ann.link,
        "translation_key": ann.translation_key,
        "language": ann.language[:8],
        "content_hash": digest,
    }


def _to_release(row: Row[Any]) -> Release:
    m = row._mapping
    announcement = Announcement(
        id=m["id"],
        title=m["title"],
        date=m["date"],
        body_html=m["body_html"],
        summary=m["summary"],
        source=m["source"],
        lang=m["lang"],
        topics=tuple(m["topics"]),
        author=m["author"],
        publish_at=m["publish_at"],
        attachments=tuple(Attachment(**a) for a in m["attachments"]),
        correction=m["correction"],
        contacts=tuple(Contact(**c) for c in m["contacts"] or ()),
        doi=m["doi"],
        link=m["link"],
        translation_of=m["translation_key"] if m["translation_key"] != m["id"] else None,
    )
    return Release(
        announcement=announcement,
        guid=m["guid"],
        version=m["version"],
        state=ReleaseState(m["state"]),
        content_hash=m["content_hash"],
        updated=m["updated_at"],
        published_at=m["published_at"],
        corrected_at=m["corrected_at"],
    )


def _visible_state(publish_at: datetime | None, now: datetime) -> ReleaseState:
    return ReleaseState.SCHEDULED if publish_at is not None and publish_at > now else ReleaseState.PUBLISHED


async def _bump_revision(conn: AsyncConnection, now: datetime) -> None:
    # One counter for the whole site: renderers cache by it, so every visible change must bump it.
    await conn.execute(
        update(site_state)
        .where(site_state.c.id == 1)
        .values(revision=site_state.c.revision + 1, changed_at=now)
    )


async def _set_topics(conn: AsyncConnection, release_id: str, topics: Sequence[str]) -> None:
    await conn.execute(delete(release_topics).where(release_topics.c.release_id == release_id))
    if topics:
        await conn.execute(insert(release_topics), [{"release_id": release_id, "topic": t} for t in topics])


class Releases:
    """Repository of releases."""

    def __init__(self, db: Database, default_language: str = "en") -> None:
        self._db = db
        self._default_language = default_language.split("-")[0].lower()
        self._writes = 0

    @property
    def writes(self) -> int:
        """How many transactions that may have changed the site this process has committed.

        Lets a cache keep the site revision for a while yet see its own process's changes at once.
        """
        return self._writes

    def _wrote(self) -> None:
        # Called after the transaction committed: a reader that fetched the revision before the
        # commit cached it under the old count, so it refetches.
        self._writes += 1

    async def upsert(
        self, ann: Announcement, *, guid: str, now: datetime, live_sources: Collection[str]
    ) -> UpsertResult:
        """Store `ann` under its id: insert, new version on content change, or nothing if unchanged.

        `live_sources` are the files present now: an id held by another live file is a duplicate,
        one held by a vanished file is taken over (a rename).
        """
        digest = content_hash(ann)
        async with self._db.engine.begin() as conn:
            current = (await conn.execute(select(releases).where(releases.c.id == ann.id))).first()
            if current is None:
                result = await self._insert(conn, ann, digest, guid, now)
            else:
                m = current._mapping
                held_elsewhere = m["source"] != ann.source and m["source"] in live_sources
                if held_elsewhere and m["state"] != ReleaseState.WITHDRAWN:
                    raise DuplicateIdError(
                        ann.source,
                        f"id {ann.id!r} is already used by {m['source']}",
                        hint="give one of the two files a different 'id:'",
                    )
                result = await self._update(conn, current, ann, digest, now)
        if result.change is not Change.UNCHANGED:
            self._wrote()
        return result

    async def _insert(
        self, conn: AsyncConnection, ann: Announcement, digest: str, guid: str, now: datetime
    ) -> UpsertResult:
        state = _visible_state(ann.publish_at, now)
        await conn.execute(
            insert(releases).values(
                id=ann.id,
                guid=guid,
                version=1,
                state=state,
                created_at=now,
                updated_at=ann.date,
                published_at=now if state is ReleaseState.PUBLISHED else None,
                corrected_at=now if ann.correction else None,
                **_row_values(ann, digest),
            )
        )
        await _set_topics(conn, ann.id, ann.topics)
        await _bump_revision(conn, now)
        return UpsertResult(Change.CREATED, ann.id, 1, state)

    async def _update(
        self,
        conn: AsyncConnection,
        current: Row[Any],
        ann: Announcement,
        digest: str,
        now: datetime,
    ) -> UpsertResult:
        m = current._mapping
        state, version = ReleaseState(m["state"]), int(m["version"])
        edited = m["content_hash"] != digest
        if not edited and state is not ReleaseState.WITHDRAWN:
            if m["source"] == ann.source:
                return UpsertResult(Change.UNCHANGED, ann.id, version, state)
            await conn.execute(update(releases).where(releases.c.id == ann.id).values(source=ann.source))
            return UpsertResult(Change.MOVED, ann.id, version, state)
        values: dict[str, Any] = {"source": ann.source, "withdrawn_at": None}
        if state is ReleaseState.HELD:
            # Only the operator releases a held release; moving its embargo into the future reschedules it.
            if ann.publish_at is not None and ann.publish_at > now:
                state, values["held_at"] = ReleaseState.SCHEDULED, None
        elif state is not ReleaseState.PUBLISHED:
            # Not visible: the embargo (or the file's return) decides; once out, a release stays out.
            state = _visible_state(ann.publish_at, now)
            if state is ReleaseState.PUBLISHED and m["published_at"] is None:
                values["published_at"] = now
        values["state"] = state
        if edited:
            if ann.correction and ann.correction != m["correction"]:
                values["corrected_at"] = now
            elif not ann.correction:
                values["corrected_at"] = None
            version += 1
            # Readers only see a change if they could see the release before it.
            updated = now if m["published_at"] is not None else ann.date
            values.update(_row_values(ann, digest), version=version, updated_at=updated)
            await _set_topics(conn, ann.id, ann.topics)
        await conn.execute(update(releases).where(releases.c.id == ann.id).values(**values))
        await _bump_revision(conn, now)
        previous = tuple(m["topics"])
        return UpsertResult(Change.UPDATED if edited else Change.RESTORED, ann.id, version, state, previous)

    async def withdraw(self, release_ids: Collection[str], now: datetime) -> list[str]:
        """Hide releases whose files are gone; returns the ids that were visible or scheduled."""
        done: list[str] = []
        async with self._db.engine.begin() as conn:
            for release_id in release_ids:
                result = await conn.execute(
                    update(releases)
                    .where(releases.c.id == release_id, releases.c.state != ReleaseState.WITHDRAWN)
                    .values(state=ReleaseState.WITHDRAWN, withdrawn_at=now)
                )
                if result.rowcount:
                    done.append(release_id)
            if done:
                await _bump_revision(conn, now)
        if done:
            self._wrote()
        return done

    async def topics_of(self, release_ids: Collection[str]) -> set[str]:
        """Every topic of the given releases."""
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(
                select(release_topics.c.topic)
                .where(release_topics.c.release_id.in_(list(release_ids)))
                .distinct()
            )
            return {r.topic for r in rows}

    async def sources(self) -> dict[str, str]:
        """Map of release id to source file for every release not withdrawn."""
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(
                select(releases.c.id, releases.c.source).where(releases.c.state != ReleaseState.WITHDRAWN)
            )
            return {r.id: r.source for r in rows}

    async def hold_missed(self, now: datetime, grace: timedelta) -> list[str]:
        """Hold scheduled releases whose embargo passed more than `grace` ago (the service was down).

        Only releases stored before their embargo are held: one dropped late was never scheduled.
        """
        async with self._db.engine.begin() as conn:
            result = await conn.execute(
                update(releases)
                .where(
                    releases.c.state == ReleaseState.SCHEDULED,
                    releases.c.publish_at < now - grace,
                    releases.c.created_at < releases.c.publish_at,
                )
                .values(state=ReleaseState.HELD, held_at=now)
                .returning(releases.c.id)
            )
            return sorted(result.scalars())

    async def release_held(self, release_id: str, now: datetime) -> Release | None:
        """Publish a held release now (the operator's decision); None if it is not held."""
        async with self._db.engine.begin() as conn:
            result = await conn.execute(
                update(releases)
                .where(releases.c.id == release_id, releases.c.state == ReleaseState.HELD)
                .values(state=ReleaseState.PUBLISHED, published_at=now)
            )
            if not result.rowcount:
                return None
            await _bump_revision(conn, now)
            row = (await conn.execute(select(releases).where(releases.c.id == release_id))).one()
        self._wrote()
        return _to_release(row)

    async def held(self) -> list[tuple[str, datetime, datetime]]:
        """(id, publish_at, held_at) of every held release, oldest embargo first."""
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(
                select(releases.c.id, releases.c.publish_at, releases.c.held_at)
                .where(releases.c.state == ReleaseState.HELD)
                .order_by(releases.c.publish_at)
            )
            return [(r.id, r.publish_at, r.held_at) for r in rows]

    async def publish_due(self, now: datetime) -> list[Release]:
        """Publish every scheduled release whose embargo has passed; returns those this call published."""
        published: list[Release] = []
        async with self._db.engine.begin() as conn:
            due = await conn.execute(
                select(releases.c.id).where(
                    releases.c.state == ReleaseState.SCHEDULED, releases.c.publish_at <= now
                )
            )
            for (release_id,) in due.all():
                # The state guard makes this a transition only one caller (or node) can win.
                result = await conn.execute(
                    update(releases)
                    .where(releases.c.id == release_id, releases.c.state == ReleaseState.SCHEDULED)
                    .values(state=ReleaseState.PUBLISHED, published_at=now)
                )
                if result.rowcount:
                    row = (await conn.execute(select(releases).where(releases.c.id == release_id))).one()
                    published.append(_to_release(row))
            if published:
                await _bump_revision(conn, now)
        if published:
            self._wrote()
        return published

    async def embargoes(self) -> list[tuple[str, datetime]]:
        """(id, publish_at) of every scheduled release, soonest first."""
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(
                select(releases.c.id, releases.c.publish_at)
                .where(releases.c.state == ReleaseState.SCHEDULED)
                .order_by(releases.c.publish_at)
            )
            return [(r.id, r.publish_at) for r in rows]

    def _visible(self, topic: str | None) -> Any:
        condition = releases.c.state == ReleaseState.PUBLISHED
        if topic is None:
            return condition
        topic_ids = select(release_topics.c.release_id).where(release_topics.c.topic == topic)
        return and_(condition, releases.c.id.in_(topic_ids))

    def _listed(self, topic: str | None, language: str | None) -> Any:
        # A language's feed lists its versions; the site's lists one version of each release: the
        # one in the default language, else the first by id.
        if language is not None:
            return and_(self._visible(topic), releases.c.language == language)
        other, default = releases.alias("other"), self._default_language
        mine_default, other_default = releases.c.language == default, other.c.language == default
        preferred = (
            select(other.c.id)
            .where(
                other.c.translation_key == releases.c.translation_key,
                other.c.id != releases.c.id,
                other.c.state == ReleaseState.PUBLISHED,
                or_(
                    and_(other_default, ~mine_default),
                    and_(other_default == mine_default, other.c.id < releases.c.id),
                ),
            )
            .exists()
        )
        return and_(self._visible(topic), ~preferred)

    async def latest(
        self, limit: int, topic: str | None = None, language: str | None = None
    ) -> list[Release]:
        """The newest listed releases (by release date), newest first; see page()."""
        # Not page(1): a feed needs no page count, which was most of a feed render's time.
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(self._newest_first(self._listed(topic, language)).limit(limit))
            return [_to_release(r) for r in rows]

    async def page(
        self, number: int, size: int, topic: str | None = None, language: str | None = None
    ) -> ReleasePage:
        """One archive page, newest first: one version of each release, or a language's versions."""
        where = self._listed(topic, language)
        async with self._db.engine.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(releases).where(where))).scalar_one()
            pages = max(1, -(-total // size))
            if number > pages:  # also keeps absurd page numbers out of the SQL OFFSET
                return ReleasePage((), number, pages, total)
            rows = await conn.execute(self._newest_first(where).limit(size).offset((number - 1) * size))
            items = tuple(_to_release(r) for r in rows)
        return ReleasePage(items, number, pages, total)

    @staticmethod
    def _newest_first(where: Any) -> Any:
        return select(releases).where(where).order_by(releases.c.date.desc(), releases.c.id.desc())

    async def versions(self, release: Release) -> list[tuple[str, str]]:
        """(lang, id) of every published language version of a release, itself included, by language."""
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(
                select(releases.c.lang, releases.c.id)
                .where(
                    releases.c.translation_key == release.announcement.translation_key,
                    releases.c.state == ReleaseState.PUBLISHED,
                )
                .order_by(releases.c.language, releases.c.id)
            )
            return [(r.lang, r.id) for r in rows]

    async def get(self, release_id: str) -> Release | None:
        """A published release by id; None if unknown, embargoed or withdrawn."""
        async with self._db.engine.connect() as conn:
            row = (
                await conn.execute(select(releases).where(releases.c.id == release_id, self._visible(None)))
            ).first()
        return _to_release(row) if row is not None else None

    async def published_ids(self) -> list[str]:
        """Ids of every published release, newest first."""
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(
                select(releases.c.id)
                .where(self._visible(None))
                .order_by(releases.c.date.desc(), releases.c.id.desc())
            )
            return [r.id for r in rows]

    async def topics(self) -> list[str]:
        """Every topic that has at least one published release, sorted."""
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(
                select(release_topics.c.topic)
                .join(releases, releases.c.id == release_topics.c.release_id)
                .where(releases.c.state == ReleaseState.PUBLISHED)
                .distinct()
                .order_by(release_topics.c.topic)
            )
            return [r.topic for r in rows]

    async def counts(self) -> dict[ReleaseState, int]:
        """Number of releases in each state."""
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(select(releases.c.state, func.count()).group_by(releases.c.state))
            found = {ReleaseState(state): n for state, n in rows}
        return {state: found.get(state, 0) for state in ReleaseState}

    async def site_version(self) -> SiteVersion:
        """A number that changes whenever anything visible changes, and the time of that change."""
        async with self._db.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(site_state.c.revision, site_state.c.changed_at).where(site_state.c.id == 1)
                )
            ).one()
        return SiteVersion(int(row.revision), row.changed_at)

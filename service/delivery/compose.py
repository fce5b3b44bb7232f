"""Turn claimed ledger rows into envelopes: one render per message kind and release, then bytes per person."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from service.delivery.mailer import Envelope
from service.models import Attachment, DeliveryKind, Release, SubscriberState
from service.render.bulletin import MailRenderer, MessageTemplate, Personal, Sender, fits_a_header
from service.render.site import Site
from service.store.ledger import Claimed
from service.store.releases import Releases
from service.tokens import Purpose, Tokens

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
Signer = Callable[[bytes], bytes]
# The attachments of a release that bulletins carry (small ones), with their bytes.
AttachmentReader = Callable[[Release], Awaitable[list[tuple[Attachment, bytes]]]]


@dataclass(frozen=True, slots=True)
class Composed:
    """Envelopes ready to send, and rows that must not be sent, with the reason."""

    envelopes: dict[int, tuple[Envelope, int | None]] = field(default_factory=dict)  # id -> (env, version)
    skipped: dict[str, list[int]] = field(default_factory=dict)  # reason -> delivery ids


def message_local_part(kind: DeliveryKind, key: str, subscriber_id: int) -> str:
    """Left side of a Message-ID: the same row always gets the same id, so a resend can be deduplicated."""
    return _UNSAFE.sub("-", f"{kind}.{key.split(':', 1)[-1]}.{subscriber_id}")


class Composer:
    """Builds each recipient's message from a template rendered once per (kind, release, version)."""

    def __init__(
        self,
        renderer: MailRenderer,
        releases: Releases,
        tokens: Tokens,
        site: Site,
        sender: Sender,
        confirm_hours: int,
        signer: Signer | None = None,
        files: AttachmentReader | None = None,
    ) -> None:
        self._renderer = renderer
        self._releases = releases
        self._tokens = tokens
        self._site = site
        self._sender = sender
        self._confirm_hours = confirm_hours
        self._signer = signer
        self._files = files
        self._templates: dict[tuple[object, ...], MessageTemplate] = {}

    async def compose(self, rows: Sequence[Claimed], now: datetime) -> Composed:
        """Envelopes for every row that may still be sent."""
        result = Composed()
        releases: dict[str, Release | None] = {}
        for row in rows:
            reason = self._reason_to_skip(row)
            release: Release | None = None
            if reason is None and row.kind is DeliveryKind.DIGEST:
                digest = await self._digest(row, releases, now)
                if digest is None:
                    reason = "every release in the digest was withdrawn"
                else:
                    result.envelopes[row.delivery_id] = (self._envelope(row, digest), None)
                    continue
            if reason is None and row.release_id is not None:
                if row.release_id not in releases:
                    releases[row.release_id] = await self._releases.get(row.release_id)
                release = releases[row.release_id]
                if release is None:
                    reason = "release withdrawn or unpublished"
            if reason is not None:
                result.skipped.setdefault(reason, []).append(row.delivery_id)
                continue
            files = await self._attached(row, release)
            template = self._template(row, release, now, files)
            envelope = self._envelope(row, template)
            result.envelopes[row.delivery_id] = (envelope, release.version if release else None)
        return result

    async def single(self, release: Release, email: str, now: datetime) -> Envelope:
        """The bulletin of `release` for one address, outside the ledger (preview, test sends)."""
        files = await self._files(release) if self._files is not None else []
        template = self._renderer.bulletin(release, now, files)
        row = Claimed(
            delivery_id=0, subscriber_id=0, email=email, subscriber_state=SubscriberState.CONFIRMED,
            generation=1, lang=release.announcement.lang, kind=DeliveryKind.BULLETIN,
            key=f"test:{release.id}:{int(now.timestamp())}", release_id=release.id, attempts=0,
            expires_at=now,
        )  # fmt: skip
        return self._envelope(row, template)

    async def _digest(
        self, row: Claimed, cache: dict[str, Release | None], now: datetime
    ) -> MessageTemplate | None:
        for release_id in row.payload:
            if release_id not in cache:
                cache[release_id] = await self._releases.get(release_id)
        items = self._in_language([r for i in row.payload if (r := cache[i]) is not None], row.lang)
        if not items:
            return None
        key = ("digest", row.lang, tuple((r.id, r.version) for r in items))
        template = self._templates.get(key)
        if template is None:
            template = self._templates[key] = self._renderer.digest(items, row.lang, now)
        return template

    def _in_language(self, items: list[Release], lang: str) -> list[Release]:
        # One version of each release: the reader's language, else the site's, else the first listed.
        wanted = (lang.split("-")[0].lower(), self._site.language.split("-")[0].lower())
        chosen: dict[str, Release] = {}
        for release in items:
            key = release.announcement.translation_key
            held = chosen.get(key)
            if held is None or _rank(release, wanted) < _rank(held, wanted):
                chosen[key] = release
        return [release for release in items if chosen[release.announcement.translation_key] is release]

    @staticmethod
    def _reason_to_skip(row: Claimed) -> str | None:
        # The doors validate addresses, but the stored one goes into To: as raw bytes: one stored by
        # other means (a database import, an older version) must not inject headers or stop the batch.
        if not fits_a_header(row.email):
            return "the address cannot be written in a mail header"
        if row.kind is DeliveryKind.CONFIRMATION:
            return (
                None
                if row.subscriber_state is SubscriberState.PENDING
                else f"subscriber {row.subscriber_state}"
            )
        if row.subscriber_state is not SubscriberState.CONFIRMED:
            return f"subscriber {row.subscriber_state}"
        return None

    async def _attached(self, row: Claimed, release: Release | None) -> list[tuple[Attachment, bytes]]:
        # Read only when the template is not cached yet: once per release version, not per row.
        if row.kind is not DeliveryKind.BULLETIN or release is None or self._files is None:
            return []
        if (row.kind, release.id, release.version) in self._templates:
            return []
        return await self._files(release)

    def _template(
        self, row: Claimed, release: Release | None, now: datetime, files: list[tuple[Attachment, bytes]]
    ) -> MessageTemplate:
        key: tuple[object, ...] = (
            (row.kind, row.lang) if release is None else (row.kind, release.id, release.version)
        )
        template = self._templates.get(key)
        if template is None:
            if row.kind is DeliveryKind.CONFIRMATION:
                template = self._renderer.confirmation(row.lang, self._confirm_hours, now)
            elif row.kind is DeliveryKind.CORRECTION and release is not None:
                template = self._renderer.correction(release, release.announcement.correction or "", now)
            elif release is not None:
                template = self._renderer.bulletin(release, now, files)
            else:
                raise ValueError(f"delivery {row.delivery_id}: {row.kind} needs a release")
            if len(self._templates) > 256:
                self._templates.clear()
            self._templates[key] = template
        return template

    def _envelope(self, row: Claimed, template: MessageTemplate) -> Envelope:
        unsubscribe = self._tokens.make(Purpose.UNSUBSCRIBE, row.subscriber_id)
        local = message_local_part(row.kind, row.key, row.subscriber_id)
        personal = Personal(
            to=row.email,
            message_id=local,
            unsubscribe_url=self._site.url(f"/unsubscribe/{unsubscribe}"),
            unsubscribe_mailto=f"mailto:{self._sender.address}?subject=unsubscribe%20{unsubscribe}",
            preferences_url=self._site.url(
                f"/preferences/{self._tokens.make(Purpose.PREFERENCES, row.subscriber_id)}"
            ),
            confirm_url=self._confirm_url(row),
            in_reply_to=message_local_part(
                DeliveryKind.BULLETIN, f"bulletin:{row.release_id}", row.subscriber_id
            ),
        )
        data = template.personalise(personal)
        if self._signer is not None:
            data = self._signer(data)
        return Envelope(
            sender=self._sender.address,
            recipient=row.email,
            data=data,
            message_id=f"{local}@{self._sender.domain}",
            key=f"{local}",
        )

    def _confirm_url(self, row: Claimed) -> str:
        if row.kind is not DeliveryKind.CONFIRMATION:
            return ""
        return self._site.url(
            f"/confirm/{self._tokens.make(Purpose.CONFIRM, row.subscriber_id, row.generation)}"
        )


def _rank(release: Release, wanted: tuple[str, str]) -> int:
    language = release.announcement.language
    return wanted.index(language) if language in wanted else len(wanted)

"""Every kind of mail the service sends, in English and French, made the way production makes them.

The real MailRenderer renders each message once; the real Composer personalises it with tokens
signed by the real Tokens and DKIM-signs it with a throwaway RSA key (as production does when
`dkim_key_file` is set). Used by the spam filter and HTML validity checks in this folder.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen.canvas import Canvas

from service.delivery.compose import Composer
from service.delivery.dkim import make_signer
from service.ingest.options import IngestOptions
from service.ingest.reader import read_release
from service.models import Attachment, Contact, DeliveryKind, Release, ReleaseState, SubscriberState
from service.render.bulletin import MailRenderer, Sender
from service.render.environment import make_environment
from service.render.site import Site
from service.store.ledger import Claimed
from service.store.releases import Releases
from service.tokens import Tokens

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")
SITE = Site(
    "IMT press releases", "News from Institut Mines-Télécom", "IMT press office",
    "https://press.example.org", "en", PARIS,
)  # fmt: skip
SENDER = Sender("press@example.org", "IMT Press Office", "example.org")
TOKEN_SECRET = "Zq0f1S8c2nD4rX6vB9mK3pL7tY5wH1jE0uA2gC8sR4o"  # a secret shaped like the real ones

CONTACTS = (
    Contact("Claire Martin", "Press officer", "claire.martin@example.org", "+33 1 45 81 77 77"),
    Contact("Jean Dupont", "Head of communications", "jean.dupont@example.org", None),
)

FRENCH = """---
title: Les instituts Carnot Télécom & Société Numérique et M.I.N.E.S à nouveau labellisés
date: 2020-02-12T09:00:00+01:00
summary: >-
  Les instituts Carnot Télécom & Société Numérique et M.I.N.E.S, où les écoles de l’IMT sont très
  impliquées, obtiennent à nouveau le label Carnot pour développer la R&D en entreprise.
topics: [research, partnerships]
author: Service de presse de l’IMT
lang: fr
translation_of: 2020-02-12-carnot-label
---

*Paris, le 12 février 2020.* Le 7 février 2020, le ministère de l’Enseignement supérieur, de la
Recherche et de l’Innovation a annoncé les lauréats du label Carnot. Parmi eux figurent les
instituts Carnot Télécom & Société Numérique et M.I.N.E.S, labellisés depuis 2006, qui voient
une nouvelle fois reconnue la qualité de leur recherche partenariale.

Depuis 2006, ce label encourage les partenariats entre les laboratoires de recherche publics et
les entreprises pour développer la R&D, le transfert de technologie et l’innovation.

Les deux instituts Carnot de l’Institut Mines-Télécom ont reçu des évaluations très positives
depuis leur création. Ce résultat s’explique par le positionnement de l’IMT : placé sous la
tutelle du ministère de l’Économie, il mène une recherche académique d’excellence et une
recherche tournée vers l’économie grâce à ses liens étroits avec les entreprises. Concrètement,
le label se traduira par une contribution financière sur plusieurs années pour professionnaliser
les relations avec les entreprises, internationaliser les partenariats et soutenir la recherche
amont.

## Le label Carnot

Créé en 2006, le label Carnot développe la recherche partenariale, c’est-à-dire la conduite de
travaux de recherche par des laboratoires publics en partenariat avec des acteurs
socio-économiques, principalement des entreprises (des PME aux grands groupes), pour répondre à
leurs besoins. Le ministère chargé de la recherche attribue le label au terme d’une procédure de
sélection exigeante.
"""

SECOND = """---
title: Un nouveau laboratoire commun sur les réseaux 6G à Palaiseau
date: 2020-02-10T10:00:00+01:00
summary: >-
  Télécom Paris et un industriel des télécommunications ouvrent un laboratoire commun consacré aux
  réseaux mobiles de sixième génération.
topics: [research]
author: Service de presse de l’IMT
lang: fr
---

Le laboratoire réunira une trentaine de chercheurs et de doctorants pendant quatre ans. Ses travaux
porteront sur l’efficacité énergétique des antennes et la sécurité des réseaux.
"""

SECOND_EN = """---
title: A new joint laboratory for 6G networks opens in Palaiseau
date: 2020-02-10T10:00:00+01:00
summary: >-
  Télécom Paris and a telecommunications company open a joint laboratory devoted to sixth
  generation mobile networks.
topics: [research]
author: IMT press office
lang: en
---

The laboratory will bring together some thirty researchers and doctoral students for four years.
Its work will address the energy efficiency of antennas and the security of networks.
"""


# Every mail every_mail() makes, by name: kind.lang
NAMES = (
    "confirmation.en", "bulletin.en", "digest.en", "correction.en",
    "confirmation.fr", "bulletin.fr", "digest.fr", "correction.fr",
    "bulletin-attached.en",  # with its PDF attached (bulletin_attach_max_bytes > 0)
)  # fmt: skip
DKIM_SELECTOR = "announce"


@dataclass(frozen=True, slots=True)
class Mail:
    """One message as the service hands it to the mail server."""

    name: str  # e.g. "bulletin.fr"
    kind: DeliveryKind
    lang: str
    data: bytes

    @property
    def html(self) -> str:
        """The text/html part, decoded."""
        from email import message_from_bytes, policy
        from email.message import EmailMessage

        message = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(message, EmailMessage)
        part = message.get_body(("html",))
        assert part is not None, f"{self.name} has no HTML part"
        return str(part.get_content())


class _Store:
    """What the Composer asks of the release store, from a dict."""

    def __init__(self, releases: dict[str, Release]) -> None:
        self._releases = releases

    async def get(self, release_id: str) -> Release | None:
        return self._releases.get(release_id)


def _release(folder: Path, name: str, text: str | None = None, **changes: object) -> Release:
    path = folder / name
    if text is not None:
        path.write_text(text, encoding="utf-8")
    ann = read_release(folder, path, path.read_bytes(), IngestOptions(PARIS))
    ann = replace(ann, **changes)  # type: ignore[arg-type]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Release(
        ann, f"tag:press.example.org,2020:{ann.id}", 1, ReleaseState.PUBLISHED, digest, ann.date, ann.date
    )


def _pdf() -> bytes:
    """A one-page fact sheet, as a press office attaches."""
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=A4, invariant=True)
    canvas.setTitle("The Carnot label 2020")
    text = canvas.beginText(72, 760)
    for line in (REPO / "announcements" / "2020-02-12-carnot-label.md").read_text().splitlines()[12:60]:
        text.textLine(line)
    canvas.drawText(text)
    canvas.showPage()
    canvas.save()
    return out.getvalue()


def _releases(folder: Path) -> dict[str, Release]:
    pdf_bytes = _pdf()
    (folder / "carnot-label-2020.pdf").write_bytes(pdf_bytes)
    sample = (REPO / "announcements" / "2020-02-12-carnot-label.md").read_text(encoding="utf-8")
    pdf = Attachment(
        "carnot-label-2020.pdf", "carnot-label-2020.pdf", "application/pdf", len(pdf_bytes), "0" * 64
    )
    extras: dict[str, object] = {
        "contacts": CONTACTS,
        "doi": "10.1234/carnot.2020",
        "link": "https://www.example.org/en/carnot",
        "attachments": (pdf,),
        "date": NOW - timedelta(hours=2),
        "correction": "The date of the ministry’s announcement was wrong: it is 7 February, not 17 February.",
    }
    french_extras = {
        **extras,
        "contacts": (
            replace(CONTACTS[0], role="Chargée de presse"),
            replace(CONTACTS[1], role="Directeur de la communication"),
        ),
        "link": "https://www.example.org/fr/carnot",
        "correction": "La date de l’annonce du ministère était erronée : le 7 février, et non le 17.",
    }
    found = [
        _release(folder, "2020-02-12-carnot-label.md", sample, **extras),
        _release(folder, "2020-02-12-carnot-label.fr.md", FRENCH, **french_extras),
        _release(folder, "2020-02-10-6g-lab.fr.md", SECOND, date=NOW - timedelta(days=1)),
        _release(
            folder, "2020-02-10-6g-lab.md", SECOND_EN, date=NOW - timedelta(days=1), translation_of=None
        ),
    ]
    return {r.id: r for r in found}


# Who gets the mails in each language: (subscriber id, address).
READERS = {"en": (4182, "jane.doe@example.com"), "fr": (4183, "marie.durand@example.fr")}


def _row(
    lang: str, kind: DeliveryKind, key: str, release_id: str | None = None, payload: tuple[str, ...] = ()
) -> Claimed:
    """A ledger row as the dispatcher claims it, for the reader of `lang`."""
    subscriber, email = READERS[lang]
    pending = kind is DeliveryKind.CONFIRMATION
    return Claimed(
        delivery_id=1, subscriber_id=subscriber, email=email,
        subscriber_state=SubscriberState.PENDING if pending else SubscriberState.CONFIRMED,
        generation=1, lang=lang, kind=kind, key=key,
        release_id=release_id, attempts=0, expires_at=NOW + timedelta(days=3), payload=payload,
    )  # fmt: skip


def dkim_key(folder: Path) -> Path:
    """A fresh 2048-bit RSA key in PEM, as an operator would configure."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = folder / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


def every_mail(folder: Path) -> list[Mail]:
    """Confirmation, bulletin (also with an attached file), digest and correction, in English and French.

    The DKIM key they are signed with is left in folder/dkim.pem.
    """
    folder.mkdir(parents=True, exist_ok=True)
    releases = _releases(folder)
    by_lang = {
        "en": ("2020-02-12-carnot-label", "2020-02-10-6g-lab"),
        "fr": ("2020-02-12-carnot-label-fr", "2020-02-10-6g-lab-fr"),
    }
    renderer = MailRenderer(make_environment(REPO / "templates"), SITE, SENDER)
    signer = make_signer(dkim_key(folder), DKIM_SELECTOR, SENDER.domain)

    async def attached(release: Release) -> list[tuple[Attachment, bytes]]:
        return [(a, (folder / a.path).read_bytes()) for a in release.announcement.attachments]

    def composer(files: bool) -> Composer:
        return Composer(
            renderer, cast(Releases, _Store(releases)), Tokens(TOKEN_SECRET), SITE, SENDER, 168,
            signer=signer, files=attached if files else None,
        )  # fmt: skip

    rows: list[tuple[str, Claimed, bool]] = []
    for lang, (main, other) in by_lang.items():
        confirm, digest = f"confirm:1:{int(NOW.timestamp())}", "digest:daily:2026-11-24"
        rows += [
            (f"confirmation.{lang}", _row(lang, DeliveryKind.CONFIRMATION, confirm), False),
            (f"bulletin.{lang}", _row(lang, DeliveryKind.BULLETIN, f"bulletin:{main}", main), False),
            (f"digest.{lang}", _row(lang, DeliveryKind.DIGEST, digest, payload=(main, other)), False),
            (f"correction.{lang}", _row(lang, DeliveryKind.CORRECTION, f"correction:{main}:v2", main), False),
        ]
    rows.append(("bulletin-attached.en", rows[1][1], True))

    async def compose() -> list[Mail]:
        mails = []
        for name, claimed, files in rows:
            # A new Composer for each: its cache would otherwise hand out the unattached bulletin.
            composed = await composer(files).compose([claimed], NOW)
            assert not composed.skipped, composed.skipped
            envelope, _ = composed.envelopes[claimed.delivery_id]
            mails.append(Mail(name, claimed.kind, claimed.lang, envelope.data))
        return mails

    mails = asyncio.run(compose())
    assert tuple(m.name for m in mails) == NAMES
    return mails

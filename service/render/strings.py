"""The few fixed phrases of our mails, per language; anything else comes from the release itself."""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

_EN: Final = {
    "read_online": "Read it online",
    "attachments": "Downloads",
    "unsubscribe": "Unsubscribe",
    "preferences": "Change your preferences",
    "why": "You receive this because you subscribed to {site}.",
    "confirm_subject": "Confirm your subscription to {site}",
    "confirm_intro": "Someone, hopefully you, asked to receive {site} by email at this address.",
    "confirm_action": "Confirm my subscription",
    "confirm_ignore": "If it was not you, ignore this message: nothing will be sent without confirmation.",
    "confirm_expiry": "This link is valid for {hours} hours.",
    "digest_subject": "{site}: new releases ({count})",
    "digest_intro": "The releases published since the last digest.",
    "correction_subject": "Correction: {title}",
    "correction_intro": "A release you received has been corrected.",
    "published": "Published",
    "contacts": "Press contacts",
    "further": "Further information",
}

_FR: Final = {
    "read_online": "Lire en ligne",
    "attachments": "Téléchargements",
    "unsubscribe": "Se désabonner",
    "preferences": "Modifier vos préférences",
    "why": "Vous recevez ce message car vous êtes abonné(e) à {site}.",
    "confirm_subject": "Confirmez votre abonnement à {site}",
    "confirm_intro": "Quelqu’un, vous sans doute, a demandé à recevoir {site} par courriel à cette adresse.",
    "confirm_action": "Confirmer mon abonnement",
    "confirm_ignore": "Si ce n’est pas vous, ignorez ce message : rien ne sera envoyé sans confirmation.",
    "confirm_expiry": "Ce lien est valable {hours} heures.",
    "digest_subject": "{site} : nouveaux communiqués ({count})",
    "digest_intro": "Les communiqués publiés depuis le précédent résumé.",
    "correction_subject": "Rectificatif : {title}",
    "correction_intro": "Un communiqué que vous avez reçu a été rectifié.",
    "published": "Publié le",
    "contacts": "Contacts presse",
    "further": "En savoir plus",
}

_LANGUAGES: Final = {"en": MappingProxyType(_EN), "fr": MappingProxyType(_FR)}
LANGUAGES: Final = tuple(_LANGUAGES)


def strings(lang: str) -> MappingProxyType[str, str]:
    """The phrases for `lang` (its primary subtag), English when we have no translation."""
    return _LANGUAGES.get(lang.split("-")[0].lower(), _LANGUAGES["en"])

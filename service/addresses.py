"""Email address validation (syntax only by default: no DNS lookups on the request path)."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email


class InvalidAddress(ValueError):
    """The text is not a usable email address; the message says why."""


def normalise_address(text: str) -> str:
    """A validated address, lowercased so one mailbox is one subscriber."""
    candidate = text.strip()
    if any(c in candidate for c in "\r\n\x00"):
        raise InvalidAddress("an address cannot contain line breaks")
    try:
        result = validate_email(candidate, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(str(exc)) from None
    return result.normalized.lower()

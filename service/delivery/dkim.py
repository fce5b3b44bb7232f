"""DKIM signing of outgoing mail (dkimpy), covering the headers receivers and RFC 8058 care about."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dkim

from service.errors import ConfigError

SIGNED_HEADERS = (
    b"from", b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type",
    b"list-id", b"list-unsubscribe", b"list-unsubscribe-post", b"in-reply-to", b"references",
)  # fmt: skip


def make_signer(key_file: Path, selector: str, domain: str) -> Callable[[bytes], bytes]:
    """A function that returns the message with a DKIM-Signature header prepended.

    The key is an RSA private key in PEM, or an Ed25519 key as dkimpy writes it (base64 of the seed).
    """
    try:
        key = key_file.read_bytes().strip()
    except OSError as exc:
        raise ConfigError("dkim_key_file", f"cannot read {key_file}: {exc.strerror}") from None
    algorithm = b"rsa-sha256" if key.startswith(b"-----BEGIN") else b"ed25519-sha256"

    def sign(message: bytes) -> bytes:
        signature = dkim.sign(
            message,
            selector.encode(),
            domain.encode(),
            key,
            include_headers=list(SIGNED_HEADERS),
            signature_algorithm=algorithm,
        )
        return bytes(signature) + message

    try:
        sign(b"From: a@b.example\r\nSubject: key check\r\n\r\nbody\r\n")
    except Exception as exc:  # dkimpy raises several unrelated types for a bad key
        raise ConfigError("dkim_key_file", f"{key_file} is not a usable DKIM key: {exc}") from None
    return sign

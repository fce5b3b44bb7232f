"""DKIM: signatures made with RSA and Ed25519 keys verify against the matching public key."""

from __future__ import annotations

import base64
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from service.delivery.dkim import make_signer
from service.errors import ConfigError

MESSAGE = (
    b"From: Press <press@example.org>\r\nTo: reader@example.com\r\nSubject: News\r\n"
    b"Date: Tue, 24 Nov 2026 09:30:00 +0000\r\nMessage-ID: <m.1@example.org>\r\n"
    b"List-Unsubscribe: <https://press.example.org/unsubscribe/abc>, <mailto:press@example.org?subject=u>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\nHello.\r\n"
)


def verify(signed: bytes, record: bytes) -> bool:
    return bool(dkim.verify(signed, dnsfunc=lambda name, timeout=5: record))


def test_rsa_signature_verifies_and_covers_list_unsubscribe(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    (tmp_path / "dkim.pem").write_bytes(pem)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    signed = make_signer(tmp_path / "dkim.pem", "announce", "example.org")(MESSAGE)
    header = signed.split(b"\r\n\r\n")[0].lower()
    assert b"list-unsubscribe:list-unsubscribe-post" in header.replace(b"\r\n", b"").replace(
        b" ", b""
    ).replace(b"\t", b"")
    assert verify(signed, record)
    tampered = signed.replace(b"unsubscribe/abc", b"unsubscribe/xyz")
    assert not verify(tampered, record)


def test_ed25519_signature_verifies(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    (tmp_path / "dkim.key").write_bytes(base64.b64encode(seed))
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    record = b"v=DKIM1; k=ed25519; p=" + base64.b64encode(public)
    signed = make_signer(tmp_path / "dkim.key", "announce", "example.org")(MESSAGE)
    assert verify(signed, record)


def test_unusable_key_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "bad.pem").write_bytes(
        b"-----BEGIN RSA PRIVATE KEY-----\nnonsense\n-----END RSA PRIVATE KEY-----\n"
    )
    with pytest.raises(ConfigError, match="dkim_key_file"):
        make_signer(tmp_path / "bad.pem", "announce", "example.org")
    with pytest.raises(ConfigError, match="cannot read"):
        make_signer(tmp_path / "missing.pem", "announce", "example.org")

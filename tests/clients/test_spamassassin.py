"""Every kind of mail we send, scored by SpamAssassin as a receiving server would, offline.

The mails (tests/clients/mails.py) are the bytes the Composer hands to the mail server: rendered
once by MailRenderer, personalised with real signed tokens, DKIM-signed with a test key. Each is
piped through `spamassassin -L -t` with its default rule set (the Debian package's), local tests
only: no DNS, no blocklists, no Razor/Pyzor/DCC, no Bayes database (which would make the score
depend on what this machine learnt before). DKIM cannot be verified without DNS, so SpamAssassin
only sees the signature; the test checks it with dkimpy against the test key instead.

A mail passes with a score of at most MAX_SCORE: far under the usual 5.0 threshold, so that a
receiving server's network rules (which we cannot run here) have room. `pytest -s` prints the rules
that fired for each mail. Skipped when spamassassin is missing, except in CI (CI set), where it fails.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization

from tests.clients.mails import DKIM_SELECTOR, NAMES, SENDER, Mail, every_mail

pytestmark = pytest.mark.slow
MAX_SCORE = 1.0
RUN_TIMEOUT = 60.0  # seconds for one spamassassin run (about one second each here)
OFFLINE = (
    "dns_available no",  # -L already skips network tests; this also keeps plugins off the resolver
    "skip_rbl_checks 1",
    "use_bayes 0",  # no learnt state: the same mail gets the same score on every machine
    "bayes_auto_learn 0",
    "add_header all Tests _TESTSSCORES(,)_",  # every rule that fired, with its exact score
)
_RULE_LINE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z0-9_]+)\s+(.*)$")


@dataclass(frozen=True, slots=True)
class Verdict:
    rules: dict[str, float]  # rule -> points
    descriptions: dict[str, str]  # rule -> what SpamAssassin says it means
    version: str

    @property
    def score(self) -> float:
        """The exact total (SpamAssassin's X-Spam-Status rounds it to one decimal)."""
        return round(sum(self.rules.values()), 3)

    def explain(self) -> str:
        lines = [f"score {self.score:.3f} (SpamAssassin {self.version})"]
        for rule, points in sorted(self.rules.items(), key=lambda item: (-item[1], item[0])):
            lines.append(f"  {points:6.3f}  {rule:24} {self.descriptions.get(rule, '')}")
        return "\n".join(lines)


def _spamassassin() -> str:
    found = shutil.which("spamassassin")
    if found is None:
        reason = "spamassassin is not installed (apt-get install spamassassin; see .ci/run)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def score(binary: str, mail: Mail, home: Path) -> Verdict:
    """SpamAssassin's verdict on one mail, with local tests only."""
    prefs = home / "user_prefs"
    prefs.touch()
    command = [binary, "-L", "-t", "-x", "-p", str(prefs)]
    for line in OFFLINE:
        command += ["--cf", line]
    # Prefs and Bayes files go to the test's folder; SpamAssassin still makes an empty ~/.spamassassin
    # (its "global state" directory, found from the uid, not from HOME).
    env = {**os.environ, "HOME": str(home)}
    done = subprocess.run(
        command, input=mail.data, capture_output=True, timeout=RUN_TIMEOUT, env=env, check=False
    )
    assert done.returncode == 0, f"{mail.name}: spamassassin failed: {done.stderr.decode(errors='replace')}"
    report = done.stdout.partition(b"\nContent analysis details:")[2]
    checked = message_from_bytes(done.stdout, policy=policy.default)
    tests = "".join(str(checked["X-Spam-Tests"] or "").split())
    rules = {name: float(points) for name, eq, points in (t.partition("=") for t in tests.split(",")) if eq}
    descriptions = {}
    for line in report.decode(errors="replace").splitlines():
        if (match := _RULE_LINE.match(line)) is not None:
            descriptions[match[2]] = match[3].strip()
    version = str(checked["X-Spam-Checker-Version"] or "?").split(" (")[0].removeprefix("SpamAssassin ")
    assert checked["X-Spam-Status"] is not None, f"{mail.name}: spamassassin added no verdict"
    return Verdict(rules, descriptions, version)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mails")


@pytest.fixture(scope="module")
def mails(folder: Path) -> dict[str, Mail]:
    return {m.name: m for m in every_mail(folder)}


@pytest.fixture(scope="module")
def verdicts(mails: dict[str, Mail], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Verdict]:
    """Every mail scored, two at a time (two cores)."""
    binary = _spamassassin()
    homes = {name: tmp_path_factory.mktemp(f"sa-{name}") for name in mails}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(score, binary, mail, homes[name]) for name, mail in mails.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name", NAMES)
def test_spamassassin_scores_every_mail_low(name: str, verdicts: dict[str, Verdict]) -> None:
    verdict = verdicts[name]
    print(f"\n{name}: {verdict.explain()}")
    assert verdict.score <= MAX_SCORE, f"{name} scores above {MAX_SCORE}:\n{verdict.explain()}"


def test_the_scored_mails_carry_a_valid_dkim_signature(mails: dict[str, Mail], folder: Path) -> None:
    """What SpamAssassin cannot check offline: each signature verifies with the published key."""
    key = serialization.load_pem_private_key((folder / "dkim.pem").read_bytes(), password=None)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    expected = f"{DKIM_SELECTOR}._domainkey.{SENDER.domain}."

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name.decode() == expected, name
        return record

    for name, mail in mails.items():
        assert mail.data.startswith(b"DKIM-Signature:"), name
        assert dkim.verify(mail.data, dnsfunc=dns), f"{name}: the DKIM signature does not verify"


def test_attachments_are_base64_in_lines_of_76(mails: dict[str, Mail], folder: Path) -> None:
    """The RFC 2045 limit (BASE64_LENGTH_79_INF scored 1.4 when the SMTP policy's 998 applied)."""
    message = message_from_bytes(mails["bulletin-attached.en"].data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    [attachment] = list(message.iter_attachments())
    assert attachment["Content-Transfer-Encoding"] == "base64"
    assert max(len(line) for line in str(attachment.get_payload()).splitlines()) == 76
    assert attachment.get_content() == (folder / "carnot-label-2020.pdf").read_bytes()

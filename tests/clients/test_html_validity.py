"""Every HTML page and mail we serve, checked by the Nu HTML Checker (vnu.jar, the W3C validator).

The pages come from the real ASGI app over a real (SQLite) database: the archive (empty, paged, of
a topic), a permalink with attachments, contacts, a DOI and three language versions, every state of
the subscription pages (with and without errors), and the 404 page, for an English and a French
site. The mails are the HTML parts of every kind we send, in English and French, as the Composer
hands them to the mail server (tests/clients/mails.py).

vnu.jar comes from npm (`vnu-jar`; see .ci/run); it is looked for at $VNU_JAR, then under
~/.cache/announce-vnu. Each group is checked in one JVM run over a directory of files (the JVM starts
slowly). The test is skipped when java or vnu.jar is missing, except in CI (CI set), where it fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.models import Subscriber
from service.runtime import Components, build, make_app
from service.tokens import Purpose
from tests.clients.mails import every_mail
from tests.conftest import FakeClock, Inbox, make_settings, release_text
from tests.web.conftest import Service, StartService
from tests.web.support import read_html, scan

pytestmark = pytest.mark.slow
VNU_TIMEOUT = 180.0  # seconds for one run of the checker over a directory
DEFAULT_JAR = (
    Path.home() / ".cache" / "announce-vnu" / "node_modules" / "vnu-jar" / "build" / "dist" / "vnu.jar"
)

# Messages that are right for a web page but wrong for a mail: (pattern, why we accept it in mail).
# Only for the HTML parts of mails; pages get no exemption. Each must still occur (no stale entries).
MAIL_EXEMPTIONS: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Finding:
    file: str
    kind: str  # "error", "warning" (vnu's "info" with subType "warning"), "non-document-error"
    line: int | None
    message: str
    extract: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.kind}: {self.message}\n    {self.extract.strip()[:160]}"


def _vnu_jar() -> Path:
    """The checker, or a skip (a failure in CI) saying what is missing."""
    jar = Path(os.environ.get("VNU_JAR") or DEFAULT_JAR)
    missing = []
    if shutil.which("java") is None:
        missing.append("java (apt-get install default-jre-headless)")
    if not jar.is_file():
        missing.append(f"{jar} (npm install --prefix ~/.cache/announce-vnu vnu-jar, or set VNU_JAR)")
    if missing:
        reason = "the Nu HTML Checker needs " + " and ".join(missing) + "; see .ci/run"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return jar


# A file with one known error, checked with the others: proves that vnu read the folder.
CANARY = "zz-canary"
CANARY_HTML = (
    '<!DOCTYPE html><html lang="en"><head><title>t</title></head><body><p><div></div></p></body></html>'
)
CANARY_ERROR = "No “p” element in scope but a “p” end tag seen."


def check(folder: Path) -> list[Finding]:
    """Every error and warning vnu reports for the .html files in `folder`."""
    jar = _vnu_jar()
    (folder / f"{CANARY}.html").write_text(CANARY_HTML, encoding="utf-8")
    command = ["java", "-Xss4m", "-XX:TieredStopAtLevel=1", "-jar", str(jar)]
    command += ["--format", "json", "--stdout", "--exit-zero-always", str(folder)]
    done = subprocess.run(command, capture_output=True, timeout=VNU_TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    result: dict[str, Any] = json.loads(done.stdout)
    findings = []
    for item in result["messages"]:
        kind = item["type"] if item["type"] != "info" else item.get("subType", "info")
        if kind == "info":
            continue
        name = str(item.get("url", "")).rsplit("/", 1)[-1]
        findings.append(Finding(name, kind, item.get("lastLine"), item["message"], item.get("extract", "")))
    canary = [f for f in findings if f.file == f"{CANARY}.html"]
    assert [(f.kind, f.message) for f in canary] == [("error", CANARY_ERROR)], (
        f"vnu did not check the files: {listing(canary)}"
    )
    return [f for f in findings if f not in canary]


def write(folder: Path, pages: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, html in pages.items():
        (folder / f"{name}.html").write_text(html, encoding="utf-8")
    return folder


def listing(findings: Iterable[Finding]) -> str:
    return "\n".join(str(f) for f in findings)


# --- the web pages ---------------------------------------------------------------------------------


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the pages do not depend on the database, and one run of each is enough here."""
    return f"sqlite+aiosqlite:///{tmp_path / 'var' / 'announce.db'}"


@pytest.fixture
async def start_service(tmp_path: Path, database_url: str, clock: FakeClock) -> AsyncIterator[StartService]:
    """Services on the test's database and inbox, with settings overridden (as in tests/web)."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**overrides: Any) -> Service:
            parts = build(make_settings(tmp_path, database_url=database_url, **overrides), clock)
            stack.push_async_callback(parts.close)
            await parts.database.migrate()
            transport = httpx.ASGITransport(app=make_app(parts))
            http = await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://testserver")
            )
            return Service(parts, http)

        yield start


PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
CONTACTS = [
    {"name": "Claire Martin", "role": "Press officer", "email": "claire.martin@example.org"},
    {"name": "Jean Dupont", "email": "jean.dupont@example.org", "phone": "+33 1 45 81 77 77"},
]


def write_releases(inbox: Inbox) -> None:
    """Three language versions of one release (with everything a permalink can show), and others."""
    inbox.write("carnot fact sheet.pdf", PDF)
    everything = {
        "topics": ["research", "partnerships"], "author": "IMT press office", "contacts": CONTACTS,
        "doi": "10.1234/carnot.2020", "link": "https://www.example.org/carnot?lang=en&src=press",
        "attachments": ["carnot fact sheet.pdf"],
        "summary": "Two Carnot institutes keep their label.",
    }  # fmt: skip
    body = (
        "*Paris, 12 February 2020.* The ministry announced the winners.\n\n## The label\n\n"
        "| Year | Institutes |\n|---|---|\n| 2006 | 20 |\n| 2020 | 37 |\n\n"
        "> A recognition of research in partnership.\n\n- first\n- second\n\n[More](https://example.org/more)\n"
    )
    inbox.write("carnot.md", release_text("The Carnot label renewed", "2026-11-20", body, **everything))
    inbox.write("carnot.fr.md", release_text("Le label Carnot renouvelé", "2026-11-20", body, **everything))
    inbox.write("carnot.de.md", release_text("Das Carnot-Label erneuert", "2026-11-20", body, **everything))
    for n in range(1, 4):
        inbox.release(f"news{n}.md", title=f"News number {n}", date=f"2026-11-0{n}", topics=["awards"])


async def subscriber(parts: Components, http: httpx.AsyncClient, email: str, *, confirm: bool) -> Subscriber:
    response = await http.post("/subscribe", data={"email": email, "lang": "fr", "frequency": "weekly"})
    assert response.status_code == 200, response.text
    found = await parts.subscribers.find(email)
    assert found is not None
    if confirm:
        await http.get(f"/confirm/{parts.tokens.make(Purpose.CONFIRM, found.id, found.generation)}")
        found = await parts.subscribers.find(email)
        assert found is not None
    return found


async def fetch(
    http: httpx.AsyncClient, pages: dict[str, str], name: str, status: int, path: str, **post: Any
) -> None:
    """GET `path` (POST when form data is given) into pages[name], checking its status and type."""
    response = await (http.post(path, data=post) if post else http.get(path))
    assert response.status_code == status, f"{name}: {path} answered {response.status_code}"
    assert response.headers["content-type"].startswith("text/html"), name
    pages[name] = response.text


async def subscription_pages(parts: Components, http: httpx.AsyncClient, prefix: str) -> dict[str, str]:
    """Every state of subscribe, confirm, unsubscribe and preferences."""
    pages: dict[str, str] = {}
    await fetch(http, pages, f"{prefix}subscribe", 200, "/subscribe")
    bad = {
        "email": "not an address",
        "topics": ["research", "nosuchtopic"],
        "lang": "xx",
        "frequency": "hourly",
    }
    await fetch(http, pages, f"{prefix}subscribe-errors", 422, "/subscribe", **bad)
    await fetch(http, pages, f"{prefix}subscribed", 200, "/subscribe", email=f"{prefix}new@example.org")
    pending = await parts.subscribers.find(f"{prefix}new@example.org")
    assert pending is not None
    confirm = parts.tokens.make(Purpose.CONFIRM, pending.id, pending.generation)
    await fetch(http, pages, f"{prefix}confirm", 200, f"/confirm/{confirm}")
    await fetch(http, pages, f"{prefix}confirm-invalid", 400, "/confirm/forged.token")

    member = await subscriber(parts, http, f"{prefix}member@example.org", confirm=True)
    preferences = f"/preferences/{parts.tokens.make(Purpose.PREFERENCES, member.id)}"
    await fetch(http, pages, f"{prefix}preferences", 200, preferences)
    csrf = next(
        a["value"] for a in read_html(pages[f"{prefix}preferences"]).attrs("input") if a.get("name") == "csrf"
    )
    choice = {"csrf": str(csrf), "topics": ["research"], "lang": "en", "frequency": "daily"}
    await fetch(http, pages, f"{prefix}preferences-saved", 200, preferences, **choice)
    wrong = {**choice, "topics": ["nosuchtopic"], "lang": "xx", "frequency": "hourly"}
    await fetch(http, pages, f"{prefix}preferences-errors", 422, preferences, **wrong)
    await fetch(
        http, pages, f"{prefix}preferences-forbidden", 403, preferences, **{**choice, "csrf": "wrong"}
    )
    await fetch(http, pages, f"{prefix}preferences-invalid", 400, "/preferences/forged.token")

    unsubscribe = f"/unsubscribe/{parts.tokens.make(Purpose.UNSUBSCRIBE, member.id)}"
    await fetch(http, pages, f"{prefix}unsubscribe", 200, unsubscribe)
    await fetch(
        http, pages, f"{prefix}unsubscribe-done", 200, unsubscribe, **{"List-Unsubscribe": "One-Click"}
    )
    await fetch(http, pages, f"{prefix}unsubscribe-invalid", 400, "/unsubscribe/forged.token")
    await fetch(http, pages, f"{prefix}preferences-not-subscribed", 200, preferences)
    return pages


async def every_page(start_service: StartService, inbox: Inbox, clock: FakeClock) -> dict[str, str]:
    english = await start_service(page_size=2, languages=["en", "fr", "de"])
    pages: dict[str, str] = {}
    await fetch(english.http, pages, "archive-empty", 200, "/")
    write_releases(inbox)
    report = await scan(english.parts)
    assert not report.problems, report.problems
    await fetch(english.http, pages, "archive", 200, "/")
    await fetch(english.http, pages, "archive-page-2", 200, "/page/2")
    await fetch(english.http, pages, "archive-topic", 200, "/topics/research/")
    await fetch(english.http, pages, "archive-topic-page-2", 200, "/topics/awards/page/2")
    for name, release_id in (("en", "carnot"), ("fr", "carnot-fr"), ("de", "carnot-de")):
        await fetch(english.http, pages, f"permalink-{name}", 200, f"/announcements/{release_id}")
    await fetch(english.http, pages, "permalink-plain", 200, "/announcements/news1")
    clock.advance(days=1)
    fixed = {"topics": ["awards"], "correction": "The number was wrong."}
    inbox.write("news1.md", release_text("News number 1", "2026-11-01", "Corrected body.", **fixed))
    assert (await scan(english.parts)).updated == ("news1",)
    await fetch(english.http, pages, "permalink-updated", 200, "/announcements/news1")
    await fetch(english.http, pages, "not-found", 404, "/announcements/nosuch")
    pages |= await subscription_pages(english.parts, english.http, "")

    french = await start_service(page_size=2, default_language="fr", languages=["fr", "en"])
    await fetch(french.http, pages, "fr-archive", 200, "/")
    await fetch(french.http, pages, "fr-not-found", 404, "/nosuch")
    pages |= await subscription_pages(french.parts, french.http, "fr-")
    return pages


async def test_every_page_is_valid_html(
    start_service: StartService, inbox: Inbox, clock: FakeClock, tmp_path: Path
) -> None:
    _vnu_jar()  # skip before building anything when the checker is missing
    pages = await every_page(start_service, inbox, clock)
    findings = check(write(tmp_path / "pages", pages))
    print(f"\nvnu checked {len(pages)} pages: {len(findings)} errors or warnings")
    assert not findings, listing(findings)


# --- the mails -------------------------------------------------------------------------------------


def test_the_html_of_every_mail_is_valid(tmp_path: Path) -> None:
    _vnu_jar()
    mails = every_mail(tmp_path / "mail")
    findings = check(write(tmp_path / "html", {m.name: m.html for m in mails}))
    exempt = [(re.compile(pattern), why) for pattern, why in MAIL_EXEMPTIONS]
    used = set()
    left = []
    for finding in findings:
        matched = [
            why for pattern, why in exempt if finding.kind == "warning" and pattern.search(finding.message)
        ]
        used.update(matched)
        if not matched:
            left.append(finding)
    print(f"\nvnu checked {len(mails)} mails: {len(findings)} findings, {len(findings) - len(left)} exempt")
    assert not left, listing(left)
    assert used == {why for _, why in MAIL_EXEMPTIONS}, "an exemption no longer matches anything: remove it"

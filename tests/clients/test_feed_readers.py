"""Real feed clients against the real `announce run` process over HTTP.

* feedparser (the parser behind most Python feed readers, rss2email included) reads every feed the
  service serves, the site's and each topic's, without a complaint (`bozo == 0`); the JSON Feed is
  read with `json` and checked against the JSON Feed 1.1 fields readers rely on.
* rss2email (`r2e`, a separate process) subscribed to /feed.atom mails one message per release to
  a real SMTP server (aiosmtpd, in the test's event loop), none when nothing changed, and exactly one
  for a release dropped later. Its repeat fetches carry the validators it was given, and the service
  answers them 304 (counted in /metrics).
"""

from __future__ import annotations

import asyncio
import configparser
import email
import email.policy
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import cast

import feedparser
import httpx
import pytest

from tests.conftest import release_text
from tests.delivery.smtpd import SmtpServer, smtp_server
from tests.processes import RunningService, drop, running_service

pytestmark = pytest.mark.slow
WAIT = 10.0  # bound on "the service noticed the file" and on starting up
R2E_TIMEOUT = 30.0  # bound on one rss2email command

# Dated apart so that "newest first" has one answer; the apostrophe ’ makes the mail subject UTF-8.
RELEASES = {
    "2026-11-18-grant.md": release_text(
        title="Research grant awarded", date="2026-11-18", topics=["research"], body="A **grant**."
    ),
    "2026-11-20-prize.md": release_text(
        title="L’institut reçoit un prix",
        date="2026-11-20",
        topics=["research", "culture"],
        lang="fr",
        body="Un *prix* pour l’institut.",
    ),
}
LATER = (
    "2026-11-22-museum.md",
    release_text(title="A museum opens", date="2026-11-22", topics=["culture"], body="Doors open."),
)


@contextmanager
def _running_service(folder: Path) -> Iterator[RunningService]:
    """`announce run` on a free port, rooted in `folder`, started with RELEASES already in its inbox."""
    (folder / "announcements").mkdir(parents=True)
    for name, text in RELEASES.items():
        drop(folder / "announcements", name, text)
    # Only the watcher can notice changes within the test: the periodic rescan is an hour away.
    with running_service(folder, scan_interval=3600, settle_seconds=0.3) as running:
        deadline = time.monotonic() + WAIT
        while len(_atom(running.base).entries) != len(RELEASES):
            assert time.monotonic() < deadline, "timed out waiting for the releases"
            time.sleep(0.05)
        yield running


@pytest.fixture(scope="module")
def shared_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """One service for the read-only feed checks (they never change its inbox)."""
    with _running_service(tmp_path_factory.mktemp("feeds")) as running:
        yield running


@pytest.fixture
def service(tmp_path: Path) -> Iterator[RunningService]:
    """A service of the test's own, whose inbox it may change."""
    with _running_service(tmp_path / "service") as running:
        yield running


def _atom(base: str) -> feedparser.FeedParserDict:
    return feedparser.parse(httpx.get(f"{base}/feed.atom", timeout=5).content)


# ---- feedparser reads every feed -------------------------------------------------------------------

# (path, titles expected, newest first)
EXPECTED = {
    "": ["L’institut reçoit un prix", "Research grant awarded"],
    "/topics/research": ["L’institut reçoit un prix", "Research grant awarded"],
    "/topics/culture": ["L’institut reçoit un prix"],
}
FILE_IDS = {"L’institut reçoit un prix": "2026-11-20-prize", "Research grant awarded": "2026-11-18-grant"}


def _fetch(base: str, path: str) -> httpx.Response:
    response = httpx.get(f"{base}{path}", timeout=5)
    assert response.status_code == 200, path
    return response


def _parse_xml(base: str, path: str) -> feedparser.FeedParserDict:
    response = _fetch(base, path)
    # With the response headers feedparser also checks the Content-Type and its charset.
    parsed = feedparser.parse(response.content, response_headers=dict(response.headers))
    assert parsed.bozo == 0, f"{path}: {parsed.get('bozo_exception')!r}"
    return parsed


@pytest.mark.parametrize("prefix", list(EXPECTED))
@pytest.mark.parametrize("kind", ["rss", "atom"])
def test_feedparser_reads_xml_feeds(shared_service: RunningService, prefix: str, kind: str) -> None:
    path = f"{prefix}/feed.{kind}"
    first, second = _parse_xml(shared_service.base, path), _parse_xml(shared_service.base, path)
    assert first.version == {"rss": "rss20", "atom": "atom10"}[kind]
    assert first.feed.title
    titles = [entry.title for entry in first.entries]
    assert titles == EXPECTED[prefix]
    ids = [entry.id for entry in first.entries]
    assert len(set(ids)) == len(ids)
    assert ids == [entry.id for entry in second.entries]  # stable: readers key on it
    published = [entry.published_parsed for entry in first.entries]
    assert published == sorted(published, reverse=True)  # newest first
    for entry in first.entries:
        assert entry.link == f"{shared_service.base}/announcements/{FILE_IDS[entry.title]}"
        assert entry.content[0].type == "text/html"
        assert "<em>" in entry.content[0].value or "<strong>" in entry.content[0].value


@pytest.mark.parametrize("prefix", list(EXPECTED))
def test_json_feed_is_json_feed_1_1(shared_service: RunningService, prefix: str) -> None:
    path = f"{prefix}/feed.json"
    response = _fetch(shared_service.base, path)
    assert response.headers["content-type"].startswith(("application/feed+json", "application/json"))
    first, second = response.json(), _fetch(shared_service.base, path).json()
    assert first["version"] == "https://jsonfeed.org/version/1.1"
    assert isinstance(first["title"], str)
    assert first["title"]
    assert first["feed_url"] == f"{shared_service.base}{path}"
    items = first["items"]
    assert [item["title"] for item in items] == EXPECTED[prefix]
    for item in items:
        for field in ("id", "url", "title", "content_html", "date_published"):
            assert isinstance(item[field], str), (path, field)
            assert item[field], (path, field)
        assert item["url"] == f"{shared_service.base}/announcements/{FILE_IDS[item['title']]}"
    ids = [item["id"] for item in items]
    assert len(set(ids)) == len(ids)
    assert ids == [item["id"] for item in second["items"]]
    dates = [datetime.fromisoformat(item["date_published"]) for item in items]  # RFC 3339
    assert all(date.tzinfo is not None for date in dates)
    assert dates == sorted(dates, reverse=True)  # newest first
    # The same release carries the same id in every format, so a reader switching format sees no new items.
    for kind in ("atom", "rss"):
        assert ids == [entry.id for entry in _parse_xml(shared_service.base, f"{prefix}/feed.{kind}").entries]


# ---- rss2email -----------------------------------------------------------------------------------

# The `r2e` script sits beside the interpreter of the venv that installed it, which need not be on PATH.
_BESIDE = Path(sys.executable).with_name("r2e")
R2E = str(_BESIDE) if _BESIDE.is_file() else shutil.which("r2e")
NOT_MODIFIED = re.compile(r'^announce_not_modified_responses_total\{kind="feed"\} (\S+)$', re.MULTILINE)


async def _r2e(home: Path, *args: str) -> str:
    """Run one rss2email command against this test's config and data files; its log on stderr."""
    assert R2E is not None
    # Its own HOME and XDG_RUNTIME_DIR (where it keeps its lock): nothing shared with the user or other tests.
    private = {name: str(home) for name in ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR")}
    process = await asyncio.create_subprocess_exec(
        R2E, "-c", str(home / "r2e.cfg"), "-d", str(home / "r2e.json"), *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **private},
    )  # fmt: skip
    try:
        async with asyncio.timeout(R2E_TIMEOUT):
            out, err = await process.communicate()  # the loop keeps serving SMTP meanwhile
    except TimeoutError:
        process.kill()  # only the process started here
        await process.wait()
        raise
    log = out.decode() + err.decode()
    assert process.returncode == 0, f"r2e {' '.join(args)} exited {process.returncode}:\n{log}"
    # `r2e new` sets its log level to `info`: a feed it finds odd ("looks like HTML", "non XML
    # Content-Type", a parse error) is a [WARNING] or [ERROR] line.
    for problem in ("Traceback", "[ERROR]", "[WARNING]", "[CRITICAL]"):
        assert problem not in log, log
    return log


async def _not_modified(http: httpx.AsyncClient) -> float:
    found = NOT_MODIFIED.search((await http.get("/metrics")).text)
    return float(found.group(1)) if found else 0.0


def _mails(server: SmtpServer) -> list[EmailMessage]:
    return [
        cast(EmailMessage, email.message_from_bytes(m.data, policy=email.policy.default))
        for m in server.messages
    ]


def _subjects(server: SmtpServer) -> list[str]:
    return [str(mail["Subject"]) for mail in _mails(server)]


@pytest.mark.skipif(
    R2E is None and not os.environ.get("CI"),  # CI must run it: there it fails instead
    reason="rss2email (`r2e`) is not installed: pip install -e '.[test]'",
)
async def test_rss2email_mails_each_release_once(service: RunningService, tmp_path: Path) -> None:
    home = tmp_path / "r2e"
    home.mkdir()
    async with smtp_server() as server, httpx.AsyncClient(base_url=service.base, timeout=5) as http:
        await _r2e(home, "new", "you@example.org")
        config = configparser.ConfigParser(interpolation=None)
        config.read(home / "r2e.cfg", encoding="utf-8")
        config["DEFAULT"].update(
            {
                "from": "r2e@example.org",
                "email-protocol": "smtp",
                "smtp-server": f"127.0.0.1:{server.port}",
                "smtp-auth": "False",
                "smtp-ssl": "False",
                "feed-timeout": "10",
            }
        )
        with (home / "r2e.cfg").open("w", encoding="utf-8") as file:
            config.write(file)
        await _r2e(home, "add", "press", f"{service.base}/feed.atom", "you@example.org")

        # First run: one mail per release, oldest first (rss2email's order), titles as subjects.
        await _r2e(home, "run")
        assert _subjects(server) == list(reversed(EXPECTED[""]))
        assert all(m.rcpt_tos == ("you@example.org",) for m in server.messages)
        assert all(m.mail_from == "r2e@example.org" for m in server.messages)
        for mail in _mails(server):  # each links to the release's permalink
            body = mail.get_body(("plain", "html"))
            assert body is not None
            assert f"{service.base}/announcements/{FILE_IDS[str(mail['Subject'])]}" in body.get_content()

        # Second run, nothing new: no mail, and the refetch was a conditional GET answered 304.
        state = json.loads((home / "r2e.json").read_text())["feeds"][0]
        assert state["etag"], "rss2email kept no ETag"
        assert state["modified"], "rss2email kept no Last-Modified"
        before = await _not_modified(http)
        await _r2e(home, "run")
        assert len(server.messages) == 2
        assert await _not_modified(http) == before + 1

        # A release dropped while everything runs: exactly one more mail.
        drop(service.inbox, *LATER)
        async with asyncio.timeout(WAIT):
            while "A museum opens" not in (await http.get("/feed.atom")).text:  # noqa: ASYNC110 - polling HTTP
                await asyncio.sleep(0.05)
        await _r2e(home, "run")
        assert _subjects(server)[2:] == ["A museum opens"]

        # And quiet again.
        before = await _not_modified(http)
        await _r2e(home, "run")
        assert len(server.messages) == 3
        assert await _not_modified(http) == before + 1
        await server.wait_idle()

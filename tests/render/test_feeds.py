"""RSS, Atom and JSON Feed output, read back with feedparser / json and compared with golden files.

Regenerate the golden files after an intended change with:
    UPDATE_GOLDEN=1 pytest tests/render/test_feeds.py
"""

from __future__ import annotations

import calendar
import json
import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import feedparser
import pytest

from service.models import Announcement, Attachment, Release, ReleaseState
from service.render.feeds import EMPTY_FEED_UPDATED, render_feed
from service.render.site import FeedKind, Site

GOLDEN = Path(__file__).resolve().parent.parent / "data" / "golden"
PARIS = ZoneInfo("Europe/Paris")
XML_KINDS = [FeedKind.RSS, FeedKind.ATOM]

SITE = Site(
    title="Ministère de l'Exemple",
    description="Communiqués de presse du ministère",
    author="Service de presse",
    base_url="https://presse.example.org",
    language="fr",
    timezone=PARIS,
)

DOSSIER = Attachment(
    name="dossier-de-presse.pdf",
    path="2024-05-14-telecom/dossier-de-presse.pdf",
    content_type="application/pdf",
    length=48213,
    sha256="0" * 64,
)
PHOTO = Attachment(
    name="photo.jpg",
    path="2024-05-14-telecom/photo.jpg",
    content_type="image/jpeg",
    length=120034,
    sha256="1" * 64,
)


def _release(announcement: Announcement, guid: str, updated: datetime, version: int = 1) -> Release:
    return Release(
        announcement=announcement,
        guid=guid,
        version=version,
        state=ReleaseState.PUBLISHED,
        content_hash=f"hash-{announcement.id}-{version}",
        updated=updated,
        published_at=announcement.date,
    )


def sample_releases() -> tuple[Release, ...]:
    """Three releases, newest first: attachments + topics + non-ASCII, topics only, bare."""
    telecom = Announcement(
        id="2024-05-14-telecom",
        title="Télécom & Société : une feuille de route",
        date=datetime(2024, 5, 14, 10, 0, tzinfo=PARIS),
        body_html="<p>Le <strong>ministère</strong> présente sa feuille de route.</p>",
        summary="Le ministère présente sa feuille de route « Télécom & Société ».",
        source="2024-05-14-telecom.md",
        lang="fr",
        topics=("télécom", "numérique"),
        author="Cabinet du ministre",
        attachments=(DOSSIER, PHOTO),
    )
    budget = Announcement(
        id="2024-04-02-budget",
        title="Budget 2025 : calendrier",
        date=datetime(2024, 4, 2, 18, 30, tzinfo=PARIS),
        body_html="<p>Le calendrier budgétaire est publié.</p>",
        summary="Le calendrier budgétaire est publié.",
        source="2024-04-02-budget.md",
        lang="fr",
        topics=("budget",),
    )
    nomination = Announcement(
        id="2024-01-08-nomination",
        title="Nomination",
        date=datetime(2024, 1, 8, 9, 0, tzinfo=UTC),
        body_html="<p>Une nomination.</p>",
        summary="",
        source="2024-01-08-nomination.txt",
        lang="fr",
    )
    return (
        _release(
            telecom,
            "urn:uuid:8d1c2a4e-1b6f-4c55-9a39-0f6b1f9a7c01",
            datetime(2024, 5, 15, 9, 30, tzinfo=PARIS),
            version=2,
        ),
        _release(
            budget,
            "urn:uuid:8d1c2a4e-1b6f-4c55-9a39-0f6b1f9a7c02",
            datetime(2024, 4, 2, 18, 30, tzinfo=PARIS),
        ),
        _release(
            nomination,
            "urn:uuid:8d1c2a4e-1b6f-4c55-9a39-0f6b1f9a7c03",
            datetime(2024, 1, 8, 9, 0, tzinfo=UTC),
        ),
    )


@pytest.fixture
def releases() -> tuple[Release, ...]:
    return sample_releases()


def parse(kind: FeedKind, body: bytes) -> Any:
    """Parse an XML feed and insist that feedparser found nothing wrong with it."""
    parsed = feedparser.parse(body)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.version == ("rss20" if kind is FeedKind.RSS else "atom10")
    return parsed


def permalink(release: Release) -> str:
    return SITE.url(Site.permalink_path(release.id))


def enclosure_url(release: Release, attachment: Attachment) -> str:
    return SITE.url(Site.attachment_path(release.id, attachment.name))


def timestamp(moment: datetime) -> int:
    return int(moment.timestamp())


def parsed_timestamp(struct: Any) -> int:
    return calendar.timegm(struct)


# --- RSS and Atom read back -------------------------------------------------------------------


@pytest.mark.parametrize("kind", XML_KINDS)
def test_entries_in_input_order_with_guid_ids(kind: FeedKind, releases: tuple[Release, ...]) -> None:
    parsed = parse(kind, render_feed(kind, releases, SITE))
    assert [entry.id for entry in parsed.entries] == [release.guid for release in releases]
    assert [entry.link for entry in parsed.entries] == [permalink(r) for r in releases]
    assert [entry.title for entry in parsed.entries] == [r.announcement.title for r in releases]


@pytest.mark.parametrize("kind", XML_KINDS)
def test_entry_texts_author_and_categories(kind: FeedKind, releases: tuple[Release, ...]) -> None:
    telecom, budget, _ = parse(kind, render_feed(kind, releases, SITE)).entries
    assert telecom.author == "Cabinet du ministre"
    assert budget.author == SITE.author  # no author of its own: the site's
    assert [tag.term for tag in telecom.tags] == ["télécom", "numérique"]
    assert [tag.term for tag in budget.tags] == ["budget"]
    assert telecom.summary == releases[0].announcement.summary
    assert telecom.content[0].value == releases[0].announcement.body_html


def test_atom_entry_dates_are_utc(releases: tuple[Release, ...]) -> None:
    telecom = parse(FeedKind.ATOM, render_feed(FeedKind.ATOM, releases, SITE)).entries[0]
    assert telecom.published == "2024-05-14T08:00:00+00:00"
    assert telecom.updated == "2024-05-15T07:30:00+00:00"


def test_rss_pub_date_is_the_announcement_date(releases: tuple[Release, ...]) -> None:
    telecom = parse(FeedKind.RSS, render_feed(FeedKind.RSS, releases, SITE)).entries[0]
    assert telecom.published == "Tue, 14 May 2024 08:00:00 +0000"


def test_atom_has_every_attachment_as_enclosure(releases: tuple[Release, ...]) -> None:
    telecom, budget, _ = parse(FeedKind.ATOM, render_feed(FeedKind.ATOM, releases, SITE)).entries
    enclosures = [(e.href, e.length, e.type) for e in telecom.enclosures]
    assert enclosures == [
        (enclosure_url(releases[0], DOSSIER), "48213", "application/pdf"),
        (enclosure_url(releases[0], PHOTO), "120034", "image/jpeg"),
    ]
    assert budget.enclosures == []


def test_rss_has_the_first_attachment_as_its_only_enclosure(releases: tuple[Release, ...]) -> None:
    telecom, budget, _ = parse(FeedKind.RSS, render_feed(FeedKind.RSS, releases, SITE)).entries
    enclosures = [(e.href, e.length, e.type) for e in telecom.enclosures]
    assert enclosures == [(enclosure_url(releases[0], DOSSIER), "48213", "application/pdf")]
    assert budget.enclosures == []


def test_rss_guid_is_not_a_permalink(releases: tuple[Release, ...]) -> None:
    body = render_feed(FeedKind.RSS, releases, SITE)
    assert f'<guid isPermaLink="false">{releases[0].guid}</guid>'.encode() in body


@pytest.mark.parametrize("kind", XML_KINDS)
def test_feed_links_title_and_language(kind: FeedKind, releases: tuple[Release, ...]) -> None:
    feed = parse(kind, render_feed(kind, releases, SITE)).feed
    rels = {link.rel: link.href for link in feed.links}
    assert rels["self"] == SITE.url(f"/feed.{kind}")
    assert feed.link == SITE.url("/")  # the alternate: RSS <link> must not be the self link
    assert feed.title == SITE.title
    assert feed.subtitle == SITE.description
    assert feed.language == "fr"
    assert feed.generator == "announce"
    assert "hub" not in rels


def test_atom_feed_id_is_the_archive_url(releases: tuple[Release, ...]) -> None:
    feed = parse(FeedKind.ATOM, render_feed(FeedKind.ATOM, releases, SITE)).feed
    assert feed.id == SITE.url("/")


def test_content_types() -> None:
    assert [kind.media_type for kind in FeedKind] == [
        "application/rss+xml",
        "application/atom+xml",
        "application/feed+json",
    ]


# --- determinism --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(FeedKind))
def test_same_input_gives_the_same_bytes(kind: FeedKind) -> None:
    assert render_feed(kind, sample_releases(), SITE) == render_feed(kind, sample_releases(), SITE)


@pytest.mark.parametrize("kind", XML_KINDS)
def test_feed_updated_is_the_newest_release_update(kind: FeedKind, releases: tuple[Release, ...]) -> None:
    # Deliberately not the first release: the feed date is the max, not the head of the list.
    newest = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    shuffled = (releases[0], replace(releases[1], updated=newest), releases[2])
    feed = parse(kind, render_feed(kind, shuffled, SITE)).feed
    assert parsed_timestamp(feed.updated_parsed) == timestamp(newest)


@pytest.mark.parametrize("kind", XML_KINDS)
def test_empty_feed_renders_and_parses(kind: FeedKind) -> None:
    parsed = parse(kind, render_feed(kind, (), SITE))
    assert parsed.entries == []
    assert parsed_timestamp(parsed.feed.updated_parsed) == timestamp(EMPTY_FEED_UPDATED)


def test_empty_json_feed() -> None:
    feed = json.loads(render_feed(FeedKind.JSON, (), SITE))
    assert feed["items"] == []
    assert feed["title"] == SITE.title


@pytest.mark.parametrize(("kind", "name"), [(k, f"feed.{k}") for k in FeedKind])
def test_golden(kind: FeedKind, name: str) -> None:
    body = render_feed(kind, sample_releases(), SITE)
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    assert body == path.read_bytes(), f"{path} differs; UPDATE_GOLDEN=1 regenerates it"


# --- JSON Feed ----------------------------------------------------------------------------------


def test_json_feed_top_level(releases: tuple[Release, ...]) -> None:
    feed = json.loads(render_feed(FeedKind.JSON, releases, SITE))
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert feed["title"] == SITE.title
    assert feed["home_page_url"] == SITE.url("/")
    assert feed["feed_url"] == SITE.url("/feed.json")
    assert feed["language"] == "fr"
    assert "hubs" not in feed


def test_json_feed_items(releases: tuple[Release, ...]) -> None:
    items = json.loads(render_feed(FeedKind.JSON, releases, SITE))["items"]
    assert [item["id"] for item in items] == [release.guid for release in releases]
    telecom, budget, _ = items
    assert telecom["url"] == permalink(releases[0])
    assert telecom["title"] == "Télécom & Société : une feuille de route"
    assert telecom["summary"] == releases[0].announcement.summary
    assert telecom["content_html"] == releases[0].announcement.body_html
    assert telecom["date_published"] == "2024-05-14T08:00:00+00:00"
    assert telecom["date_modified"] == "2024-05-15T07:30:00+00:00"
    assert telecom["authors"] == [{"name": "Cabinet du ministre"}]
    assert budget["authors"] == [{"name": SITE.author}]
    assert telecom["tags"] == ["télécom", "numérique"]
    assert telecom["language"] == "fr"
    assert telecom["attachments"] == [
        {
            "url": enclosure_url(releases[0], a),
            "mime_type": a.content_type,
            "size_in_bytes": a.length,
        }
        for a in (DOSSIER, PHOTO)
    ]
    assert "attachments" not in budget


def test_json_feed_is_utf8_not_escaped(releases: tuple[Release, ...]) -> None:
    assert "Télécom & Société".encode() in render_feed(FeedKind.JSON, releases, SITE)


# --- topic feeds and hubs -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", XML_KINDS)
def test_topic_feed_title_and_links(kind: FeedKind, releases: tuple[Release, ...]) -> None:
    feed = parse(kind, render_feed(kind, releases[:1], SITE, topic="télécom")).feed
    assert feed.title == f"{SITE.title}: télécom"
    rels = {link.rel: link.href for link in feed.links}
    assert rels["self"] == SITE.url(f"/topics/télécom/feed.{kind}")
    assert feed.link == SITE.url("/topics/télécom/")


def test_topic_atom_id_and_json_urls(releases: tuple[Release, ...]) -> None:
    atom = parse(FeedKind.ATOM, render_feed(FeedKind.ATOM, releases, SITE, topic="budget")).feed
    assert atom.id == SITE.url("/topics/budget/")
    feed = json.loads(render_feed(FeedKind.JSON, releases, SITE, topic="budget"))
    assert feed["title"] == f"{SITE.title}: budget"
    assert feed["feed_url"] == SITE.url("/topics/budget/feed.json")
    assert feed["home_page_url"] == SITE.url("/topics/budget/")


HUB_SITE = replace(SITE, hub="https://hub.example.net/")


@pytest.mark.parametrize("kind", XML_KINDS)
def test_hub_link(kind: FeedKind, releases: tuple[Release, ...]) -> None:
    feed = parse(kind, render_feed(kind, releases, HUB_SITE)).feed
    rels = {link.rel: link.href for link in feed.links}
    assert rels["hub"] == "https://hub.example.net/"
    assert rels["self"] == SITE.url(f"/feed.{kind}")
    assert feed.link == SITE.url("/")  # the hub must not become the RSS <link>


def test_json_hubs(releases: tuple[Release, ...]) -> None:
    feed = json.loads(render_feed(FeedKind.JSON, releases, HUB_SITE))
    assert feed["hubs"] == [{"type": "WebSub", "url": "https://hub.example.net/"}]


# --- hostile text -------------------------------------------------------------------------------

HOSTILE = "]]> & <script>alert(1)</script>\x00\x0b\ud800\ufffe end"
HOSTILE_CLEAN = "]]> & <script>alert(1)</script> end"


def hostile_release() -> Release:
    release = sample_releases()[0]
    announcement = replace(
        release.announcement,
        title=HOSTILE,
        summary=HOSTILE,
        body_html=f"<p>{HOSTILE}</p>",
        author=HOSTILE,
        topics=(HOSTILE,),
    )
    return replace(release, announcement=announcement)


@pytest.mark.parametrize("kind", XML_KINDS)
def test_hostile_text_renders_valid_xml(kind: FeedKind) -> None:
    entry = parse(kind, render_feed(kind, [hostile_release()], SITE)).entries[0]
    # feedparser strips <script> from text it treats as HTML; what matters is what survives.
    assert entry.title.startswith("]]> &")
    assert entry.title.endswith(" end")


def test_hostile_text_in_topic_and_site(releases: tuple[Release, ...]) -> None:
    site = replace(SITE, title=HOSTILE, description=HOSTILE, author=HOSTILE)
    for kind in XML_KINDS:
        parse(kind, render_feed(kind, releases, site, topic=HOSTILE))


def test_hostile_text_in_json() -> None:
    body = render_feed(FeedKind.JSON, [hostile_release()], SITE)
    item = json.loads(body)["items"][0]
    assert item["title"] == HOSTILE_CLEAN
    assert item["tags"] == [HOSTILE_CLEAN]
    assert item["authors"] == [{"name": HOSTILE_CLEAN}]


def test_title_of_only_illegal_characters_falls_back_to_the_id() -> None:
    release = sample_releases()[2]
    release = replace(release, announcement=replace(release.announcement, title="\x00\x01"))
    entry = parse(FeedKind.ATOM, render_feed(FeedKind.ATOM, [release], SITE)).entries[0]
    assert entry.title == release.id

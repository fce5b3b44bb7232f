"""Archive, permalink and not-found pages rendered through the real templates."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2
import pytest
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from service.models import Announcement, Attachment, Contact, Release, ReleasePage, ReleaseState
from service.render.environment import isodate, localdate, make_environment
from service.render.pages import PageRenderer
from service.render.site import FeedKind, Site

TEMPLATES = Path(__file__).parents[2] / "templates"
BASE_URL = "https://press.example.org"
HOSTILE_TITLE = '</script><script>alert(1)</script> and "><img src=x onerror=alert(1)>'
PUBLISHED = datetime(2020, 2, 12, 9, 30, tzinfo=timezone(timedelta(hours=1)))


# --- fixtures and builders ---------------------------------------------------------------------


@pytest.fixture
def site() -> Site:
    return Site(
        title="Ministry of Examples Press Office",
        description="News releases from the Ministry of Examples",
        author="Ministry of Examples",
        base_url=BASE_URL,
        language="en",
        timezone=ZoneInfo("Europe/London"),
    )


@pytest.fixture
def env() -> jinja2.Environment:
    return make_environment(TEMPLATES)


@pytest.fixture
def renderer(env: jinja2.Environment, site: Site) -> PageRenderer:
    return PageRenderer(env, site)


def make_release(
    release_id: str = "2020-02-12-budget",
    *,
    title: str = "Budget statement published",
    summary: str = "The annual budget statement is now available.",
    date: datetime = PUBLISHED,
    topics: tuple[str, ...] = ("economy", "budget"),
    author: str | None = "Jane Doe",
    attachments: tuple[Attachment, ...] = (),
    version: int = 1,
    updated: datetime | None = None,
    contacts: tuple[Contact, ...] = (),
    doi: str | None = None,
    link: str | None = None,
) -> Release:
    announcement = Announcement(
        id=release_id,
        title=title,
        date=date,
        body_html="<p>The statement <em>sets out</em> spending plans.</p>",
        summary=summary,
        source=f"{release_id}.md",
        lang="en-GB",
        topics=topics,
        author=author,
        attachments=attachments,
        contacts=contacts,
        doi=doi,
        link=link,
    )
    return Release(
        announcement=announcement,
        guid=f"urn:uuid:{release_id}",
        version=version,
        state=ReleaseState.PUBLISHED,
        content_hash="0" * 64,
        updated=updated or date,
        published_at=date,
    )


def make_page(*releases: Release, number: int = 1, total_pages: int = 1) -> ReleasePage:
    return ReleasePage(
        releases=releases, number=number, total_pages=total_pages, total_releases=len(releases)
    )


# --- a small HTML structure reader ---------------------------------------------------------------


@dataclass
class Tag:
    name: str
    attrs: dict[str, str | None]


class Parsed(HTMLParser):
    """Start tags in document order, the text of each h1 and the raw text of each script."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[Tag] = []
        self.h1_texts: list[str] = []
        self.scripts: list[str] = []
        self._in: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(Tag(tag, dict(attrs)))
        if tag == "h1":
            self.h1_texts.append("")
        if tag == "script":
            self.scripts.append("")
        if tag in ("h1", "script"):
            self._in.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._in and self._in[-1] == tag:
            self._in.pop()

    def handle_data(self, data: str) -> None:
        if "h1" in self._in:
            self.h1_texts[-1] += data
        if "script" in self._in:
            self.scripts[-1] += data

    def find(self, tag: str, /, **attrs: str) -> list[Tag]:
        """Start tags of this kind whose attributes include all of attrs."""
        return [t for t in self.tags if t.name == tag and all(t.attrs.get(k) == v for k, v in attrs.items())]

    def hrefs(self, tag: str = "a", /, **attrs: str) -> list[str | None]:
        """The href of each matching start tag."""
        return [t.attrs.get("href") for t in self.find(tag, **attrs)]


def parse(html: str) -> Parsed:
    parsed = Parsed()
    parsed.feed(html)
    parsed.close()
    return parsed


def json_ld(html: str) -> dict[str, object]:
    """The JSON-LD object of a page (exactly one is expected)."""
    parsed = parse(html)
    scripts = [
        text
        for tag, text in zip(parsed.find("script"), parsed.scripts, strict=True)
        if tag.attrs.get("type") == "application/ld+json"
    ]
    assert len(scripts) == 1
    data = json.loads(scripts[0])
    assert isinstance(data, dict)
    return data


def alternates(parsed: Parsed) -> dict[str, set[str | None]]:
    """Autodiscovery links grouped by media type."""
    found: dict[str, set[str | None]] = {}
    for tag in parsed.find("link", rel="alternate"):
        found.setdefault(str(tag.attrs["type"]), set()).add(tag.attrs["href"])
    return found


# --- environment -------------------------------------------------------------------------------


def test_environment_is_sandboxed_and_strict(env: jinja2.Environment) -> None:
    assert isinstance(env, SandboxedEnvironment)
    assert env.undefined is jinja2.StrictUndefined
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("{{ missing }}").render()


def test_sandbox_refuses_python_internals(env: jinja2.Environment) -> None:
    with pytest.raises(SecurityError):
        env.from_string("{{ ''.__class__.__mro__ }}").render()


def test_sandbox_refuses_internals_of_passed_objects(env: jinja2.Environment, site: Site) -> None:
    with pytest.raises(SecurityError):
        env.from_string("{{ site.url.__globals__ }}").render(site=site)


@pytest.mark.parametrize(
    ("name", "escaped"),
    [("x.html.j2", True), ("x.html", True), ("x.xml.j2", True), ("x.txt.j2", False)],
)
def test_autoescape_by_template_name(name: str, escaped: bool) -> None:
    env = make_environment(TEMPLATES)
    env.loader = jinja2.DictLoader({name: "{{ value }}"})
    out = env.get_template(name).render(value="<b>&")
    assert out == ("&lt;b&gt;&amp;" if escaped else "<b>&")


def test_string_templates_are_escaped(env: jinja2.Environment) -> None:
    assert env.from_string("{{ v }}").render(v="<i>") == "&lt;i&gt;"


def test_isodate_is_rfc3339_utc() -> None:
    assert isodate(PUBLISHED) == "2020-02-12T08:30:00Z"


def test_localdate_uses_the_given_zone() -> None:
    late = datetime(2020, 2, 11, 23, 30, tzinfo=UTC)
    assert localdate(late, ZoneInfo("Europe/Paris")) == "February 12, 2020"
    assert localdate(late, "Europe/London") == "February 11, 2020"


@pytest.mark.parametrize("fmt", [isodate, lambda d: localdate(d, "UTC")])
def test_date_filters_refuse_naive_datetimes(fmt: object) -> None:
    assert callable(fmt)
    with pytest.raises(ValueError, match="naive"):
        fmt(datetime(2020, 2, 12, 9, 30))


# --- archive -----------------------------------------------------------------------------------


def test_archive_lists_releases_in_given_order(renderer: PageRenderer) -> None:
    # Deliberately not in date order: ordering is the store's job, the page keeps what it gets.
    ids = ("b-second", "a-first", "c-third")
    page = make_page(*(make_release(i, title=f"Title {i}") for i in ids))
    parsed = parse(renderer.archive(page))
    permalinks = [h for h in parsed.hrefs() if h and h.startswith("/announcements/")]
    assert permalinks == [Site.permalink_path(i) for i in ids]


def test_archive_entries_show_date_summary_and_topics(renderer: PageRenderer) -> None:
    html = renderer.archive(make_page(make_release()))
    parsed = parse(html)
    assert parsed.find("time", datetime="2020-02-12T08:30:00Z")
    assert "February 12, 2020" in html  # the archive is in the site's language, "en"
    assert "The annual budget statement is now available." in html
    assert {"/topics/economy/", "/topics/budget/"} <= set(parsed.hrefs())


@pytest.mark.parametrize(
    ("number", "newer", "older"),
    [(1, None, "/page/2"), (2, "/", "/page/3"), (3, "/page/2", None)],
)
def test_archive_pagination(
    renderer: PageRenderer, number: int, newer: str | None, older: str | None
) -> None:
    page = make_page(make_release(), number=number, total_pages=3)
    parsed = parse(renderer.archive(page))
    assert parsed.hrefs(rel="prev") == ([newer] if newer else [])
    assert parsed.hrefs(rel="next") == ([older] if older else [])
    assert len(parsed.find("nav", **{"aria-label": "Pagination"})) == 1


def test_topic_archive_pagination_stays_in_topic(renderer: PageRenderer) -> None:
    page = make_page(make_release(), number=2, total_pages=3)
    parsed = parse(renderer.archive(page, topic="economy"))
    assert parsed.hrefs(rel="prev") == ["/topics/economy/"]
    assert parsed.hrefs(rel="next") == ["/topics/economy/page/3"]


def test_single_page_archive_has_no_pagination(renderer: PageRenderer) -> None:
    parsed = parse(renderer.archive(make_page(make_release())))
    assert not parsed.find("nav", **{"aria-label": "Pagination"})


def test_empty_archive_is_friendly(renderer: PageRenderer) -> None:
    html = renderer.archive(ReleasePage(releases=(), number=1, total_pages=0, total_releases=0))
    parsed = parse(html)
    assert "No announcements have been published yet." in html
    assert not parsed.find("ol")
    assert not parsed.find("nav", **{"aria-label": "Pagination"})
    assert len(parsed.h1_texts) == 1


def test_site_archive_advertises_site_feeds_only(renderer: PageRenderer) -> None:
    found = alternates(parse(renderer.archive(make_page(make_release()))))
    assert found == {kind.media_type: {f"{BASE_URL}/feed.{kind}"} for kind in FeedKind}


def test_topic_archive_advertises_topic_feeds(renderer: PageRenderer) -> None:
    parsed = parse(renderer.archive(make_page(make_release()), topic="economy"))
    found = alternates(parsed)
    assert found == {
        kind.media_type: {f"{BASE_URL}/topics/economy/feed.{kind}", f"{BASE_URL}/feed.{kind}"}
        for kind in FeedKind
    }
    # The topic's own feed is offered first to clients that pick the first link.
    first = parsed.find("link", rel="alternate")[0]
    assert first.attrs["href"] == f"{BASE_URL}/topics/economy/feed.rss"
    assert parsed.hrefs("link", rel="canonical") == [f"{BASE_URL}/topics/economy/"]


# --- permalink ---------------------------------------------------------------------------------


def test_permalink_has_canonical_and_feed_links(renderer: PageRenderer) -> None:
    parsed = parse(renderer.announcement(make_release()))
    assert parsed.hrefs("link", rel="canonical") == [f"{BASE_URL}/announcements/2020-02-12-budget"]
    assert alternates(parsed) == {
        "application/rss+xml": {f"{BASE_URL}/feed.rss"},
        "application/atom+xml": {f"{BASE_URL}/feed.atom"},
        "application/feed+json": {f"{BASE_URL}/feed.json"},
    }


def test_permalink_structure(renderer: PageRenderer) -> None:
    html = renderer.announcement(make_release())
    parsed = parse(html)
    assert parsed.find("html", lang="en-GB")
    assert parsed.h1_texts == ["Budget statement published"]
    assert len(parsed.find("main")) == 1
    assert parsed.hrefs(href="#main") == ["#main"]  # skip link
    assert parsed.find("time", datetime="2020-02-12T08:30:00Z")
    assert "Jane Doe" in html
    assert "/" in parsed.hrefs()  # back to the archive
    # Sanitised body HTML is kept as markup, not escaped.
    assert "<p>The statement <em>sets out</em> spending plans.</p>" in html


def test_permalink_shows_update_only_for_later_versions(renderer: PageRenderer) -> None:
    changed = datetime(2020, 3, 1, 12, 0, tzinfo=UTC)
    first = parse(renderer.announcement(make_release()))
    later = parse(renderer.announcement(make_release(version=2, updated=changed)))
    assert len(first.find("time")) == 1
    assert later.find("time", datetime="2020-03-01T12:00:00Z")


def test_permalink_attachments(renderer: PageRenderer) -> None:
    sheet = Attachment(
        name="fact sheet.pdf",
        path="2020-02-12-budget/fact sheet.pdf",
        content_type="application/pdf",
        length=1_500_000,
        sha256="0" * 64,
    )
    html = renderer.announcement(make_release(attachments=(sheet,)))
    links = parse(html).find("a", type="application/pdf")
    assert [a.attrs["href"] for a in links] == [
        "/announcements/2020-02-12-budget/attachments/fact%20sheet.pdf"
    ]
    assert "fact sheet.pdf" in html
    assert "1.5 MB" in html


def test_permalink_json_ld(renderer: PageRenderer) -> None:
    changed = datetime(2020, 3, 1, 12, 0, tzinfo=UTC)
    data = json_ld(renderer.announcement(make_release(version=2, updated=changed)))
    url = f"{BASE_URL}/announcements/2020-02-12-budget"
    assert data["@context"] == "https://schema.org"
    assert data["@type"] == "NewsArticle"
    assert data["headline"] == "Budget statement published"
    assert data["description"] == "The annual budget statement is now available."
    assert data["datePublished"] == "2020-02-12T08:30:00Z"
    assert data["dateModified"] == "2020-03-01T12:00:00Z"
    assert data["inLanguage"] == "en-GB"
    assert data["author"] == {"@type": "Person", "name": "Jane Doe"}
    assert data["publisher"] == {
        "@type": "Organization",
        "name": "Ministry of Examples Press Office",
    }
    assert data["url"] == url
    assert data["mainEntityOfPage"] == {"@type": "WebPage", "@id": url}
    assert data["keywords"] == ["economy", "budget"]


def test_json_ld_credits_the_office_when_no_author(renderer: PageRenderer) -> None:
    data = json_ld(renderer.announcement(make_release(author=None)))
    assert data["author"] == {"@type": "Organization", "name": "Ministry of Examples"}


# --- hostile input -----------------------------------------------------------------------------


@pytest.fixture
def hostile() -> Release:
    return make_release(title=HOSTILE_TITLE, summary=HOSTILE_TITLE, author=HOSTILE_TITLE, topics=("economy",))


def assert_inert(html: str) -> Parsed:
    """No markup from the hostile text became elements or attributes."""
    parsed = parse(html)
    assert HOSTILE_TITLE not in html
    assert not parsed.find("img")
    assert all("onerror" not in t.attrs for t in parsed.tags)
    executable = [
        text
        for tag, text in zip(parsed.find("script"), parsed.scripts, strict=True)
        if tag.attrs.get("type") != "application/ld+json"
    ]
    assert executable == []
    return parsed


def test_hostile_title_is_escaped_in_archive(renderer: PageRenderer, hostile: Release) -> None:
    parsed = assert_inert(renderer.archive(make_page(hostile)))
    assert not parsed.find("script")
    link = parsed.find("a", href=Site.permalink_path(hostile.id))
    assert len(link) == 1


def test_hostile_title_is_escaped_in_permalink(renderer: PageRenderer, hostile: Release) -> None:
    html = renderer.announcement(hostile)
    parsed = assert_inert(html)
    assert parsed.h1_texts == [HOSTILE_TITLE]  # shown as text, exactly as written
    assert len(parsed.find("script")) == 1  # only the JSON-LD
    head, _, _ = html.partition("</head>")
    ld = re.search(r'<script type="application/ld\+json">(.*?)</script>', head, re.DOTALL)
    assert ld is not None
    assert not re.search(r"[<>&]", ld.group(1))
    data = json_ld(html)
    assert data["headline"] == HOSTILE_TITLE
    assert data["author"] == {"@type": "Person", "name": HOSTILE_TITLE}


def test_hostile_title_is_escaped_in_attributes(renderer: PageRenderer, hostile: Release) -> None:
    parsed = parse(renderer.announcement(hostile))
    description = parsed.find("meta", name="description")
    assert [d.attrs["content"] for d in description] == [HOSTILE_TITLE]


# --- determinism and the 404 page -----------------------------------------------------------------


def test_output_is_byte_identical_between_renders(site: Site) -> None:
    release = make_release(version=2, updated=datetime(2020, 3, 1, tzinfo=UTC))
    page = make_page(release, number=2, total_pages=3)

    def render_all() -> list[bytes]:
        renderer = PageRenderer(make_environment(TEMPLATES), site)
        pages = [
            renderer.archive(page),
            renderer.archive(page, topic="economy"),
            renderer.announcement(release),
            renderer.not_found(),
        ]
        return [p.encode() for p in pages]

    assert render_all() == render_all()


def test_not_found_renders(renderer: PageRenderer) -> None:
    html = renderer.not_found()
    parsed = parse(html)
    assert parsed.h1_texts == ["Page not found"]
    assert parsed.find("meta", name="robots", content="noindex")
    assert not parsed.find("link", rel="canonical")
    assert "/" in parsed.hrefs()
    assert html.endswith("</html>\n")


@pytest.mark.parametrize("kind", ["archive", "announcement", "not_found"])
def test_every_page_has_landmarks_and_one_h1(renderer: PageRenderer, kind: str) -> None:
    html = {
        "archive": lambda: renderer.archive(make_page(make_release())),
        "announcement": lambda: renderer.announcement(make_release()),
        "not_found": renderer.not_found,
    }[kind]()
    parsed = parse(html)
    assert html.startswith("<!DOCTYPE html>")
    assert len(parsed.h1_texts) == 1
    for landmark in ("header", "main", "footer"):
        assert parsed.find(landmark)
    assert parsed.find("meta", charset="utf-8")
    assert parsed.find("meta", name="viewport")


def test_permalink_contacts_doi_and_link(renderer: PageRenderer) -> None:
    contacts = (
        Contact("Jane Doe", "Press officer", "press@example.org", "+33 1 23 45 67 89"),
        Contact("Paul"),
    )
    html = renderer.announcement(
        make_release(contacts=contacts, doi="10.1234/abc<5>", link="https://example.org/more?a=1&b=2")
    )
    section = re.search(r'<section class="contacts".*?</section>', html, re.S)
    assert section is not None
    assert " ".join(re.sub(r"<[^>]+>", "", section.group()).split()) == (
        "Press contacts Jane Doe, Press officer · press@example.org · +33 1 23 45 67 89 Paul"
    )
    hrefs = parse(html).hrefs()
    assert "mailto:press@example.org" in hrefs
    assert "tel:+33123456789" in hrefs
    assert "https://doi.org/10.1234/abc%3C5%3E" in hrefs
    assert "https://example.org/more?a=1&b=2" in hrefs
    data = json_ld(html)
    assert data["publisher"] == {
        "@type": "Organization",
        "name": "Ministry of Examples Press Office",
        "contactPoint": [
            {
                "@type": "ContactPoint",
                "contactType": "press",
                "name": "Jane Doe",
                "description": "Press officer",
                "email": "press@example.org",
                "telephone": "+33 1 23 45 67 89",
            },
            {"@type": "ContactPoint", "contactType": "press", "name": "Paul"},
        ],
    }
    assert data["citation"] == [
        {
            "@type": "ScholarlyArticle",
            "@id": "https://doi.org/10.1234/abc<5>",
            "identifier": "doi:10.1234/abc<5>",
        },
        "https://example.org/more?a=1&b=2",
    ]

"""Archive and permalink pages: releases in, deterministic HTML out."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2
from markupsafe import Markup

from service.models import Contact, Release, ReleasePage
from service.render.content import reader_body
from service.render.environment import isodate, language_name
from service.render.site import FeedKind, Site

_FEED_LABELS = {FeedKind.RSS: "RSS", FeedKind.ATOM: "Atom", FeedKind.JSON: "JSON Feed"}

# Characters that could end the <script> element or open a comment/CDATA inside it. Their JSON
# \u escapes decode to the same string, so the data is unchanged for any JSON-LD consumer.
_SCRIPT_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


@dataclass(frozen=True, slots=True)
class FeedLink:
    """One feed a page advertises: in <head> for autodiscovery and in the footer for people."""

    kind: FeedKind
    label: str  # "RSS", "Atom", "JSON Feed"
    title: str  # the feed's name as a reader would list it
    path: str  # in-site path, for visible links
    url: str  # absolute URL, for autodiscovery

    @property
    def media_type(self) -> str:
        """The content type announced in the link's type attribute."""
        return self.kind.media_type


@dataclass(frozen=True, slots=True)
class Version:
    """A language version of a release, as its pages link to it."""

    lang: str
    url: str
    name: str  # the language's name in itself
    current: bool  # the page being rendered


def feed_links(site: Site, topic: str | None = None) -> tuple[FeedLink, ...]:
    """The feeds of the site, or of one topic, in every format."""
    name = f"{site.title}: {topic}" if topic else site.title
    return tuple(
        FeedLink(
            kind=kind,
            label=_FEED_LABELS[kind],
            title=f"{name} ({_FEED_LABELS[kind]})",
            path=site.feed_path(kind, topic),
            url=site.url(site.feed_path(kind, topic)),
        )
        for kind in FeedKind
    )


def neighbours(page: ReleasePage, topic: str | None = None) -> tuple[str | None, str | None]:
    """Paths of the newer and the older archive page, None at either end."""
    newer = Site.archive_path(page.number - 1, topic) if page.number > 1 else None
    older = Site.archive_path(page.number + 1, topic) if page.number < page.total_pages else None
    return newer, older


def author_of(site: Site, release: Release) -> str:
    """The name a release is credited to: its own author, else the site's."""
    return release.announcement.author or site.author


def news_article(site: Site, release: Release) -> dict[str, Any]:
    """The schema.org NewsArticle describing a release's permalink page."""
    article = release.announcement
    url = site.url(site.permalink_path(release.id))
    # A named author on the release is taken to be a person (a spokesperson); the fallback is
    # the press office itself, which is an organisation.
    author_type = "Person" if article.author else "Organization"
    data: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "NewsArticle",
        "headline": article.title,
        "description": article.summary,
        "datePublished": isodate(article.date),
        "dateModified": isodate(release.updated),
        "inLanguage": article.lang,
        "author": {"@type": author_type, "name": author_of(site, release)},
        "publisher": {"@type": "Organization", "name": site.title},
        "url": url,
        "mainEntityOfPage": {"@type": "WebPage", "@id": url},
        "keywords": list(article.topics),
    }
    if article.contacts:
        publisher = data["publisher"]
        publisher["contactPoint"] = [_contact_point(person) for person in article.contacts]
    cited: list[Any] = []  # the paper a release announces, and where to read more
    if article.doi:
        doi_url = f"https://doi.org/{article.doi}"
        cited.append({"@type": "ScholarlyArticle", "@id": doi_url, "identifier": f"doi:{article.doi}"})
    if article.link:
        cited.append(article.link)
    if cited:
        data["citation"] = cited
    return data


def _contact_point(person: Contact) -> dict[str, str]:
    point = {"@type": "ContactPoint", "contactType": "press", "name": person.name}
    for key, value in (("description", person.role), ("email", person.email), ("telephone", person.phone)):
        if value:
            point[key] = value
    return point


def script_json(data: Mapping[str, Any]) -> Markup:
    """Serialise data as JSON that is safe to embed verbatim in a <script> element."""
    text = json.dumps(data, ensure_ascii=False, indent=2)
    # Escaping (not autoescape) is what makes this safe: HTML entities are not decoded inside
    # <script>, so the text must be marked safe *after* the dangerous characters are gone.
    return Markup(text.translate(_SCRIPT_ESCAPES))


@dataclass(frozen=True, slots=True)
class Choices:
    """What the subscribe and preferences forms offer, what is chosen, and what is wrong.

    `topics` are offered as checkboxes; `languages` and `frequencies` are (value, label) pairs;
    `errors` maps a field name (email, topics, lang, frequency, or form) to its message.
    """

    topics: Sequence[str] = ()
    chosen: Collection[str] = ()
    lang: str = ""
    frequency: str = ""
    languages: Sequence[tuple[str, str]] = ()
    frequencies: Sequence[tuple[str, str]] = ()
    errors: Mapping[str, str] = field(default_factory=dict)

    def context(self) -> dict[str, Any]:
        """The template variables of the shared form fields."""
        return {
            "topics": self.topics, "chosen": self.chosen, "chosen_lang": self.lang,
            "frequency": self.frequency, "languages": self.languages, "frequencies": self.frequencies,
            "errors": self.errors,
        }  # fmt: skip


class PageRenderer:
    """Renders the public HTML pages from releases; never looks at the clock."""

    def __init__(self, env: jinja2.Environment, site: Site) -> None:
        self._env = env
        self._site = site

    def archive(self, page: ReleasePage, topic: str | None = None) -> str:
        """One page of the archive, of the whole site or of one topic, newest first as given."""
        site = self._site
        newer, older = neighbours(page, topic)
        # On a topic page the topic's feeds come first: autodiscovery clients often offer the
        # first link, and someone reading a topic most likely wants that topic.
        feeds = (*feed_links(site, topic), *feed_links(site)) if topic else feed_links(site)
        return self._render(
            "web/index.html.j2",
            lang=site.language,
            canonical_url=site.url(site.archive_path(page.number, topic)),
            feeds=feeds,
            page=page,
            releases=page.releases,
            topic=topic,
            newer_path=newer,
            older_path=older,
        )

    def announcement(self, release: Release, versions: Sequence[tuple[str, str]] = ()) -> str:
        """The permalink page of one release, with its JSON-LD description.

        `versions` are the (lang, id) of its language versions, itself included (see Releases.versions).
        """
        site = self._site
        return self._render(
            "web/announcement.html.j2",
            versions=tuple(
                Version(
                    lang,
                    site.url(site.permalink_path(release_id)),
                    language_name(lang),
                    release_id == release.id,
                )
                for lang, release_id in versions
            )
            if len(versions) > 1
            else (),
            lang=release.announcement.lang,
            canonical_url=site.url(site.permalink_path(release.id)),
            feeds=feed_links(site),
            json_ld=script_json(news_article(site, release)),
            release=release,
            announcement=release.announcement,
            author=author_of(site, release),
            # Sanitised at ingest: this is the one place stored HTML is trusted as markup.
            body=Markup(reader_body(release, self._site.timezone)),
            modified=release.updated if release.version > 1 else None,
        )

    def not_found(self) -> str:
        """The page served for unknown, embargoed and withdrawn addresses."""
        return self._render(
            "web/not_found.html.j2",
            lang=self._site.language,
            canonical_url=None,
            feeds=feed_links(self._site),
        )

    def subscribe(self, email: str, choices: Choices) -> str:
        """The subscription form: empty, or filled in again with what was typed and what is wrong."""
        return self._render(
            "web/subscribe.html.j2",
            lang=self._site.language,
            canonical_url=self._site.url("/subscribe"),
            feeds=feed_links(self._site),
            email=email,
            **choices.context(),
        )

    def subscribed(self) -> str:
        """The answer to every subscription request: the same page whatever the address's state."""
        site = self._site
        return self._render(
            "web/subscribed.html.j2", lang=site.language, canonical_url=None, feeds=feed_links(site)
        )

    def confirm(self, preferences_path: str | None) -> str:
        """After a confirmation link: subscribed, with a preferences link (None: the link was invalid)."""
        return self._render(
            "web/confirm.html.j2",
            lang=self._site.language,
            canonical_url=None,
            feeds=feed_links(self._site),
            preferences_path=preferences_path,
        )

    def unsubscribe(self, state: str, action: str) -> str:
        """The unsubscribe page; state: ask (one button posting to `action`), done, or invalid."""
        return self._render(
            "web/unsubscribe.html.j2",
            lang=self._site.language,
            canonical_url=None,
            feeds=feed_links(self._site),
            state=state,
            action=action,
        )

    def preferences(
        self, state: str, *, action: str = "", csrf: str = "", choices: Choices | None = None
    ) -> str:
        """The preferences page.

        state: form (pre-filled; posts to `action` with the `csrf` value), saved (the form again,
        with a confirmation), not_subscribed, invalid (a forged or unknown link) or forbidden
        (a cross-site or tampered submission).
        """
        return self._render(
            "web/preferences.html.j2",
            lang=self._site.language,
            canonical_url=None,
            feeds=feed_links(self._site),
            state=state,
            action=action,
            csrf=csrf,
            **(choices or Choices()).context(),
        )

    def _render(self, name: str, **context: Any) -> str:
        """Render a template with the variables every page's base layout needs."""
        context.setdefault("json_ld", None)
        context.setdefault("versions", ())
        return self._env.get_template(name).render(site=self._site, **context)

"""Mail rendering: golden messages for the sample release, personalisation, both languages."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from service.ingest.options import IngestOptions
from service.ingest.reader import read_release
from service.models import Contact, Release, ReleaseState
from service.render.bulletin import MailRenderer, Personal, Sender
from service.render.environment import make_environment
from service.render.site import Site

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "data" / "golden"
NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
SITE = Site(
    "IMT press releases",
    "News",
    "IMT press office",
    "https://press.example.org",
    "en",
    ZoneInfo("Europe/Paris"),
)
SENDER = Sender("press@example.org", "IMT Press Office", "example.org")
READER = Personal(
    to="reader@example.com",
    message_id="bulletin.2020-02-12-carnot-label.7",
    unsubscribe_url="https://press.example.org/unsubscribe/" + "u" * 60,
    unsubscribe_mailto="mailto:press@example.org?subject=unsubscribe%20" + "u" * 60,
    preferences_url="https://press.example.org/preferences/" + "p" * 60,
    confirm_url="https://press.example.org/confirm/" + "c" * 60,
    in_reply_to="bulletin.2020-02-12-carnot-label.7",
)


def sample(**changes: object) -> Release:
    folder = REPO / "announcements"
    path = folder / "2020-02-12-carnot-label.md"
    ann = replace(
        read_release(folder, path, path.read_bytes(), IngestOptions(ZoneInfo("Europe/Paris"))),
        **changes,  # type: ignore[arg-type]
    )
    return Release(
        ann, "tag:press.example.org,2020-02-12:carnot", 1, ReleaseState.PUBLISHED, "h", ann.date, ann.date
    )


@pytest.fixture(scope="module")
def renderer() -> MailRenderer:
    return MailRenderer(make_environment(REPO / "templates"), SITE, SENDER)


def golden(name: str, data: bytes) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_bytes(data)
    assert data == path.read_bytes(), f"{name} changed; rerun with UPDATE_GOLDEN=1 if intended"


def parse(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_golden_bulletin(renderer: MailRenderer) -> None:
    golden("bulletin.eml", renderer.bulletin(sample(), NOW).personalise(READER))


def test_golden_confirmation_in_english_and_french(renderer: MailRenderer) -> None:
    golden("confirm.en.eml", renderer.confirmation("en", 168, NOW).personalise(READER))
    golden("confirm.fr.eml", renderer.confirmation("fr", 168, NOW).personalise(READER))


def test_golden_correction_and_digest(renderer: MailRenderer) -> None:
    golden("correction.eml", renderer.correction(sample(), "A date was wrong.", NOW).personalise(READER))
    golden("digest.eml", renderer.digest([sample(), sample()], "en", NOW).personalise(READER))


def test_rendering_is_deterministic(renderer: MailRenderer) -> None:
    assert renderer.bulletin(sample(), NOW).data == renderer.bulletin(sample(), NOW).data


def test_personalisation_only_changes_the_personal_parts(renderer: MailRenderer) -> None:
    template = renderer.bulletin(sample(), NOW)
    one = parse(template.personalise(READER))
    other = parse(template.personalise(Personal("other@example.net", "bulletin.x.9")))
    assert (one["To"], other["To"]) == ("reader@example.com", "other@example.net")
    assert (one["Message-ID"], other["Message-ID"]) == (
        "<bulletin.2020-02-12-carnot-label.7@example.org>",
        "<bulletin.x.9@example.org>",
    )
    assert one["Subject"] == other["Subject"]


def test_no_placeholder_survives(renderer: MailRenderer) -> None:
    for template in (
        renderer.bulletin(sample(), NOW),
        renderer.confirmation("en", 1, NOW),
        renderer.correction(sample(), "x", NOW),
        renderer.digest([sample()], "fr", NOW),
    ):
        data = template.personalise(READER)
        assert b"ZZ" not in data
        assert b"zz-" not in data


def test_long_list_unsubscribe_is_neither_folded_nor_encoded(renderer: MailRenderer) -> None:
    long_token = "t" * 400
    data = renderer.bulletin(sample(), NOW).personalise(
        Personal(
            "a@b.example",
            "m",
            f"https://press.example.org/unsubscribe/{long_token}",
            f"mailto:x@y?s={long_token}",
        )
    )
    [line] = [line for line in data.split(b"\r\n") if line.startswith(b"List-Unsubscribe:")]
    expected = f"<https://press.example.org/unsubscribe/{long_token}>, <mailto:x@y?s={long_token}>"
    assert line == f"List-Unsubscribe: {expected}".encode()


def test_both_parts_carry_unsubscribe_and_preferences(renderer: MailRenderer) -> None:
    message = parse(renderer.bulletin(sample(), NOW).personalise(READER))
    for subtype in ("plain", "html"):
        part = message.get_body((subtype,))
        assert part is not None
        content = part.get_content()
        assert READER.unsubscribe_url in content
        assert READER.preferences_url in content


def test_text_part_reads_at_72_columns(renderer: MailRenderer) -> None:
    message = parse(renderer.bulletin(sample(), NOW).personalise(READER))
    text = message.get_body(("plain",))
    assert text is not None
    long_lines = [
        line for line in text.get_content().splitlines() if len(line) > 72 and "https://" not in line
    ]
    assert long_lines == []


def test_french_strings_in_a_french_release(renderer: MailRenderer) -> None:
    release = sample(lang="fr")
    message = parse(renderer.bulletin(release, NOW).personalise(READER))
    text = message.get_body(("plain",))
    assert text is not None
    assert "Se désabonner" in text.get_content()
    assert "Publié le 12 février 2020" in text.get_content()


def test_hostile_release_text_is_escaped_in_html(renderer: MailRenderer) -> None:
    message = parse(renderer.bulletin(sample(title="<script>x</script>"), NOW).personalise(READER))
    html = message.get_body(("html",))
    assert html is not None
    assert "<script>" not in html.get_content()
    assert "&lt;script&gt;x&lt;/script&gt;" in html.get_content()


def test_contacts_doi_and_link_in_both_parts(renderer: MailRenderer) -> None:
    release = sample(
        contacts=(Contact("Jane Doe", "Press officer", "press@example.org", "+33 1 23 45 67 89"),),
        doi="10.1234/carnot",
        link="https://example.org/carnot?x=1&y=2",
    )
    message = parse(renderer.bulletin(release, NOW).personalise(READER))
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert html is not None
    plain = text.get_content().replace("\r\n", "\n")
    assert "DOI: https://doi.org/10.1234/carnot\n" in plain
    assert "Further information: https://example.org/carnot?x=1&y=2\n" in plain
    assert "Press contacts:\n- Jane Doe, Press officer, press@example.org, +33 1 23 45 67 89\n" in plain
    markup = html.get_content()
    assert '<a href="mailto:press@example.org"' in markup
    assert 'href="https://example.org/carnot?x=1&amp;y=2"' in markup
    assert "Press contacts</h2>" in markup

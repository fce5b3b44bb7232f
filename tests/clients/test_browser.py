"""A real browser (headless Chromium, driven by Playwright) against the real `announce run` process.

* The subscriber's journey, as a person does it: the archive, a release, the subscription form, the
  confirmation mail (read from a real SMTP server, aiosmtpd, the service's relay) and its link,
  the preferences form, a bulletin for a release dropped afterwards, and its unsubscribe link.
  Each page's visible result is checked.
* Keyboard only: the form is reached and sent with Tab and Enter, and the focused element always
  shows a visible focus indicator.
* Accessibility: axe-core runs on every page, in the light and dark colour schemes; a serious or
  critical violation fails the test (every finding is written beside the screenshots).
* Screenshots of every page at 1280 and 390 px wide (see tests/clients/browser.py for where).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.clients.browser import (
    HEIGHT,
    Axe,
    artefacts_folder,
    chromium,
    new_page,
    screenshots,
)
from tests.conftest import release_text
from tests.delivery.smtpd import Received, SmtpServer, smtp_server
from tests.processes import RunningService, drop, running_service

pytestmark = pytest.mark.slow
WAIT = 15.0  # bound on "the service noticed the file" and on "the mail arrived"
READER = "reader@example.org"
FIRST = ("2026-11-18-grant.md", "Research grant awarded")
SETTINGS: dict[str, object] = {"scan_interval": 3600, "settle_seconds": 0.3, "subscribe_rate_limit": 100}


def _first_release() -> str:
    # Published when the service starts, before anyone subscribes: nobody receives it.
    return release_text(
        title=FIRST[1],
        date="2026-11-18",
        topics=["research", "culture"],
        summary="The institute receives a grant for its research on batteries.",
        body="The institute receives a **grant** for its research on batteries.\n\n## Next steps\n\nHiring.",
        contacts=[{"name": "Ada Lovelace", "role": "Press officer", "email": "press@example.org"}],
    )


def _wait_for(base: str, path: str, text: str, log: Path) -> None:
    deadline = time.monotonic() + WAIT
    while text not in httpx.get(f"{base}{path}", timeout=5).text:
        assert time.monotonic() < deadline, f"timed out waiting for {text!r} at {path}\n{log.read_text()}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def plain_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """A service with one release, mailing to its file outbox (for the checks that send nothing we read)."""
    folder = tmp_path_factory.mktemp("browser")
    (folder / "announcements").mkdir()
    drop(folder / "announcements", FIRST[0], _first_release())
    with running_service(folder, **SETTINGS) as running:
        _wait_for(running.base, "/", FIRST[1], running.log)
        yield running


async def _mail_to(server: SmtpServer, address: str, count: int, log: Path) -> EmailMessage:
    """The `count`-th message the SMTP server accepted for `address`, waiting for it (bounded)."""

    def mine() -> list[Received]:
        return [m for m in server.messages if address in m.rcpt_tos]

    try:
        async with asyncio.timeout(WAIT):
            while len(mine()) < count:  # noqa: ASYNC110 - the server only appends to a list
                await asyncio.sleep(0.05)
    except TimeoutError:
        service_log = log.read_text()  # noqa: ASYNC240 - a small file, read once on failure
        pytest.fail(f"no message {count} for {address} within {WAIT} s\n{service_log}")
    return message_from_bytes(mine()[count - 1].data, policy=policy.default)


def _part(message: EmailMessage, subtype: str) -> str:
    part = message.get_body((subtype,))
    assert part is not None, f"no text/{subtype} part"
    return str(part.get_content())


class Pages:
    """Checks and artefacts for each page the journey visits."""

    def __init__(self, page: Page, folder: Path) -> None:
        self.page = page
        self.folder = folder
        self.axe = Axe()

    async def check(self, name: str, heading: str) -> None:
        """The page's h1 says `heading`; axe-core finds nothing serious; screenshots at both widths."""
        await expect(self.page.get_by_role("heading", level=1)).to_have_text(heading)
        await self.axe.check(self.page, self.folder, name)
        await screenshots(self.page, self.folder, name)


async def test_subscriber_journey_in_a_browser(tmp_path: Path) -> None:
    folder = artefacts_folder(tmp_path, "browser")
    today = datetime.now(UTC).date().isoformat()
    news = (f"{today}-museum.md", "A museum of computing opens in Brest")
    (tmp_path / "service" / "announcements").mkdir(parents=True)
    drop(tmp_path / "service" / "announcements", FIRST[0], _first_release())
    async with smtp_server() as server:
        relay = {"mail_transport": "smtp", "smtp_port": server.port, "smtp_timeout": 5}
        mailer = {"mail_from": "press@example.org", "mail_from_name": "Example Press Office"}
        with running_service(tmp_path / "service", **SETTINGS, **relay, **mailer) as service:
            _wait_for(service.base, "/", FIRST[1], service.log)
            async with chromium() as browser:
                page = await new_page(browser)
                pages = Pages(page, folder)

                # The archive lists the release; its title leads to the permalink page.
                await page.goto(f"{service.base}/")
                await pages.check("archive", "Announcements")
                await page.get_by_role("link", name=FIRST[1]).click()
                await expect(page).to_have_url(f"{service.base}/announcements/2026-11-18-grant")
                await pages.check("announcement", FIRST[1])
                await expect(page.get_by_role("heading", name="Press contacts")).to_be_visible()
                await expect(page.get_by_role("link", name="research")).to_be_visible()

                # Subscribe with the form, to one topic.
                await page.goto(f"{service.base}/subscribe")
                await pages.check("subscribe", "Subscribe by email")
                await page.get_by_label("Email address").fill(READER)
                await page.get_by_label("research").check()
                await page.get_by_role("button", name="Subscribe").click()
                await pages.check("subscribed", "Check your inbox")
                await expect(page.get_by_role("status")).to_contain_text("confirmation link")

                # The confirmation mail: its link (the same in both parts) confirms.
                confirmation = await _mail_to(server, READER, 1, service.log)
                assert confirmation["Subject"] == "Confirm your subscription to Press releases"
                link = re.search(rf"{re.escape(service.base)}/confirm/\S+", _part(confirmation, "plain"))
                assert link is not None
                assert f'href="{link.group(0)}"' in _part(confirmation, "html")
                await page.goto(link.group(0))
                await pages.check("confirmed", "You are subscribed")
                await expect(page.get_by_role("status")).to_contain_text("is confirmed")

                # Preferences, from the confirmed page's link: add a topic, choose French.
                await page.get_by_role("link", name=re.compile("change your topics")).click()
                await pages.check("preferences", "Your email preferences")
                await expect(page.get_by_label("research")).to_be_checked()
                await expect(page.get_by_label("culture")).not_to_be_checked()
                await page.get_by_label("culture").check()
                await page.get_by_label("Language of the emails").select_option("fr")
                await page.get_by_role("button", name="Save my preferences").click()
                await expect(page.get_by_role("status")).to_have_text("Your preferences are saved.")
                await pages.check("preferences-saved", "Your email preferences")
                await expect(page.get_by_label("culture")).to_be_checked()
                await expect(page.get_by_label("Language of the emails")).to_have_value("fr")

                # A release on the topic just added: its bulletin arrives, with an unsubscribe link.
                drop(service.inbox, news[0], release_text(title=news[1], date=today, topics=["culture"]))
                bulletin = await _mail_to(server, READER, 2, service.log)
                assert bulletin["Subject"] == news[1]
                assert bulletin["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
                link = re.search(rf"{re.escape(service.base)}/unsubscribe/\S+", _part(bulletin, "plain"))
                assert link is not None
                assert f"<{link.group(0)}>" in bulletin["List-Unsubscribe"]
                await page.goto(link.group(0))
                await pages.check("unsubscribe", "Unsubscribe")
                await page.get_by_role("button", name="Unsubscribe").click()
                await pages.check("unsubscribed", "You are unsubscribed")
                await expect(page.get_by_role("status")).to_contain_text("not receive any more email")
                await page.reload()  # the link now says so too: the unsubscription was stored
                await expect(page.get_by_role("heading", level=1)).to_have_text("You are unsubscribed")
                assert len([m for m in server.messages if READER in m.rcpt_tos]) == 2
        await server.wait_idle()
    pages.axe.done()


async def test_other_pages_are_accessible(plain_service: RunningService, tmp_path: Path) -> None:
    """The pages off the happy path: a refused form, bad links, a topic, an unknown address."""
    folder = artefacts_folder(tmp_path, "browser")
    base = plain_service.base
    async with chromium() as browser:
        page = await new_page(browser)
        pages = Pages(page, folder)
        await page.goto(f"{base}/subscribe")
        await page.get_by_label("Email address").fill("not an address")
        await page.get_by_role("button", name="Subscribe").click()
        await expect(page.get_by_role("alert")).to_contain_text("There is a problem")
        await expect(page.get_by_label("Email address")).to_have_attribute("aria-invalid", "true")
        await pages.check("subscribe-error", "Subscribe by email")
        for name, path, heading in (
            ("topic", "/topics/research/", "Topic: research"),
            ("not-found", "/announcements/nothing-here", "Page not found"),
            ("confirm-invalid", "/confirm/not-a-token", "This link is invalid or has expired"),
            ("unsubscribe-invalid", "/unsubscribe/not-a-token", "This link is invalid"),
            ("preferences-invalid", "/preferences/not-a-token", "This link is invalid"),
        ):
            await page.goto(f"{base}{path}")
            await pages.check(name, heading)
    pages.axe.done()


async def _focused(page: Page) -> dict[str, Any]:
    """What has the focus, and how it is drawn."""
    return cast(
        dict[str, Any],
        await page.evaluate(
            """() => {
                const el = document.activeElement;
                const style = getComputedStyle(el);
                const box = el.getBoundingClientRect();
                return {
                    tag: el.tagName.toLowerCase(), id: el.id, type: el.getAttribute('type') || '',
                    text: (el.innerText || el.value || '').trim().slice(0, 40),
                    focusVisible: el.matches(':focus-visible'),
                    outline: style.outlineStyle, outlineWidth: parseFloat(style.outlineWidth),
                    top: box.top, bottom: box.bottom, height: box.height, width: box.width,
                };
            }"""
        ),
    )


def _assert_visible_focus(focus: dict[str, Any]) -> None:
    assert focus["focusVisible"], f"{focus} does not match :focus-visible"
    assert focus["outline"] not in ("none", "hidden"), f"{focus}: no focus outline"
    assert focus["outlineWidth"] >= 2, f"{focus}: focus outline thinner than 2 px"
    assert focus["width"] > 0, f"{focus}: focused element not drawn"
    assert focus["height"] > 0, f"{focus}: focused element not drawn"
    assert focus["top"] >= 0, f"{focus}: focused element above the viewport"
    assert focus["bottom"] <= HEIGHT, f"{focus}: focused element below the viewport"


async def test_keyboard_only_subscription(plain_service: RunningService, tmp_path: Path) -> None:
    folder = artefacts_folder(tmp_path, "browser")
    async with chromium() as browser:
        page = await new_page(browser)
        await page.goto(f"{plain_service.base}/subscribe")
        # First Tab: the skip link, shown on focus; Enter moves on to the main content.
        await page.keyboard.press("Tab")
        focus = await _focused(page)
        assert (focus["tag"], focus["text"]) == ("a", "Skip to content")
        _assert_visible_focus(focus)
        await page.screenshot(path=folder / "keyboard-skip-link.png")
        await page.keyboard.press("Enter")
        await expect(page).to_have_url(re.compile("#main$"))
        # Next Tab: the address field; then Tab through the form to its button.
        await page.keyboard.press("Tab")
        focus = await _focused(page)
        assert (focus["tag"], focus["id"]) == ("input", "email")
        _assert_visible_focus(focus)
        await page.keyboard.type("keyboard@example.org")
        visited = ["email"]
        for _ in range(20):  # bounded: the form has a handful of controls
            await page.keyboard.press("Tab")
            focus = await _focused(page)
            _assert_visible_focus(focus)
            visited.append(focus["id"] or focus["tag"])
            if focus["tag"] == "button":
                break
        assert focus["tag"] == "button", f"never reached the button: {visited}"
        assert visited[1:] == ["topic-1", "topic-2", "lang", "frequency-immediate", "button"], visited
        await page.screenshot(path=folder / "keyboard-submit.png")
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")

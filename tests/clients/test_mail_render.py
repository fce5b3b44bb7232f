"""Every kind of mail as a mail client shows it: the HTML part rendered by Chromium, the text part read.

The messages are those of tests/clients/mails.py (the confirmation, a bulletin, one with an
attached file, a digest and a correction, in English and in French, made by the real renderer and
Composer, with real tokens):

* the HTML part, as sent (CSS inlined), is rendered at 600 px (desktop mail clients) and 375 px
  (phones) to PNG artefacts, fits both widths without a horizontal scroll bar, and axe-core finds
  no serious or critical problem in it;
* every line of the text part is at most 72 columns, except lines that carry a URL (cut, a URL
  no longer works).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from playwright.async_api import Browser, Route

from tests.clients.browser import HEIGHT, Axe, artefacts_folder, chromium, new_page
from tests.clients.mails import Mail, every_mail

pytestmark = pytest.mark.slow
WIDTHS = (600, 375)
TEXT_COLUMNS = 72
URL = re.compile(r"\b(?:https?://|mailto:)\S+")
KINDS = ("confirmation", "bulletin", "digest", "correction")


@pytest.fixture(scope="module")
def mails(tmp_path_factory: pytest.TempPathFactory) -> list[Mail]:
    return every_mail(tmp_path_factory.mktemp("mail"))


def _text(mail: Mail) -> str:
    message = message_from_bytes(mail.data, policy=policy.default)
    part = message.get_body(("plain",))
    assert part is not None, f"{mail.name} has no text part"
    return str(part.get_content())


def test_every_kind_in_both_languages(mails: list[Mail]) -> None:
    names = {mail.name for mail in mails}
    assert {f"{kind}.{lang}" for kind in KINDS for lang in ("en", "fr")} <= names
    for mail in mails:
        assert f'<html lang="{mail.lang}"' in mail.html, mail.name


def test_text_lines_fit_72_columns(mails: list[Mail]) -> None:
    too_long = [
        f"{mail.name}: {len(line)} columns: {line!r}"
        for mail in mails
        for line in _text(mail).splitlines()
        if len(line) > TEXT_COLUMNS and not URL.search(line)
    ]
    assert not too_long, "\n".join(too_long)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as running:
        yield running


async def _offline(route: Route) -> None:
    await route.abort()  # links and images point at the site: nothing leaves the machine


async def test_html_parts_render_at_mail_client_widths(
    mails: list[Mail], browser: Browser, tmp_path: Path
) -> None:
    folder = artefacts_folder(tmp_path, "mail")
    axe = Axe()
    page = await new_page(browser, WIDTHS[0])
    await page.context.route("**/*", _offline)
    for mail in mails:
        await page.set_viewport_size({"width": WIDTHS[0], "height": HEIGHT})
        await page.set_content(mail.html, wait_until="load")
        await axe.check(page, folder, f"mail-{mail.name}")
        for width in WIDTHS:
            await page.set_viewport_size({"width": width, "height": HEIGHT})
            wide = await page.evaluate("() => document.documentElement.scrollWidth")
            assert wide <= width, f"{mail.name} at {width} px needs {wide} px: a horizontal scroll bar"
            await page.screenshot(path=folder / f"mail-{mail.name}.{width}.png", full_page=True)
    axe.done()

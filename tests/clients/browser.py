"""Headless Chromium for the client tests: Debian's browser driven by Playwright, axe-core, screenshots.

* Chromium is the system's (`/usr/bin/chromium`, or `ANNOUNCE_CHROMIUM`), never one Playwright
  downloads: `playwright install` is not needed and not run.
* axe-core comes from npm, installed outside the repository (`.ci/run` does it; by hand:
  `npm install --prefix "$HOME/.cache/announce-axe" axe-core@4`, or point `ANNOUNCE_AXE` at an
  `axe.min.js`).
* Artefacts (screenshots, axe reports) go to `ANNOUNCE_ARTEFACTS` if set, else the test's tmp_path.

Outside CI a missing browser skips the tests that need it, and missing axe-core skips them after
their other checks, with the reason; with `CI` set either fails them instead.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

__all__ = [
    "DESKTOP",
    "HEIGHT",
    "MOBILE",
    "WAIT_MS",
    "Axe",
    "Browser",
    "Page",
    "artefacts_folder",
    "chromium",
    "new_page",
    "screenshots",
]

FLAGS = (
    "--no-sandbox",  # the CI container runs as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-background-networking",  # nothing but 127.0.0.1: no update checks, no safe-browsing lists
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
DESKTOP = 1280
MOBILE = 390
HEIGHT = 900  # the viewport's; screenshots are of the full page
WAIT_MS = 10_000  # bound on every Playwright action and navigation
SERIOUS = ("serious", "critical")

expect.set_options(timeout=WAIT_MS)  # its default, 5 s, is short on a loaded 2-core CI machine


def _unavailable(reason: str) -> None:
    """Skip outside CI, fail in CI: there the checks must run."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)")
    pytest.skip(reason)


def chromium_path() -> Path:
    """Debian's Chromium (ANNOUNCE_CHROMIUM overrides); skip (fail in CI) if it is not installed."""
    configured = os.environ.get("ANNOUNCE_CHROMIUM")
    found = Path(configured) if configured else Path("/usr/bin/chromium")
    if not found.is_file():
        which = None if configured else shutil.which("chromium")
        if which is None:
            _unavailable(f"Chromium not found at {found}: apt-get install -y chromium")
        found = Path(str(which))
    return found


def _axe_source() -> tuple[str, str | None]:
    """(the source of axe.min.js, None), or ("", why it is missing); fails in CI if it is missing."""
    configured = os.environ.get("ANNOUNCE_AXE")
    candidates = [Path(configured)] if configured else []
    prefix = Path(os.environ.get("ANNOUNCE_AXE_PREFIX", Path.home() / ".cache" / "announce-axe"))
    candidates.append(prefix / "node_modules" / "axe-core" / "axe.min.js")
    for candidate in candidates:
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8"), None
    install = f"npm install --prefix {prefix} axe-core@4 (or set ANNOUNCE_AXE)"
    reason = f"axe-core not found at {candidates[-1]}: {install}"
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)")
    return "", reason


class Axe:
    """axe-core for one test; without it (outside CI) the test runs its other checks, then skips.

    Call `check` on each page and `done` at the end of the test.
    """

    def __init__(self) -> None:
        self.script, self.missing = _axe_source()

    async def check(self, page: Page, folder: Path, name: str) -> None:
        """axe-core in light and dark colour schemes; fails on a serious or critical violation.

        Every violation found (any impact) is written to <folder>/<name>.axe.json.
        """
        if self.missing:
            return
        found: list[dict[str, Any]] = []
        for scheme in ("light", "dark"):
            await page.emulate_media(color_scheme=scheme)
            found += [{**v, "scheme": scheme} for v in await axe_run(page, self.script)]
        await page.emulate_media(color_scheme="light")
        (folder / f"{name}.axe.json").write_text(json.dumps(found, indent=2), encoding="utf-8")
        serious = [v for v in found if v["impact"] in SERIOUS]
        assert not serious, f"{name} ({page.url}): axe-core found:\n" + json.dumps(serious, indent=2)

    def done(self) -> None:
        """Skip, saying so, if the accessibility checks could not run (everything else passed)."""
        if self.missing:
            pytest.skip(f"every other check passed, but accessibility was not checked: {self.missing}")


def artefacts_folder(tmp_path: Path, name: str) -> Path:
    """Where a test writes its screenshots and reports: $ANNOUNCE_ARTEFACTS/<name>, or tmp_path/<name>."""
    root = os.environ.get("ANNOUNCE_ARTEFACTS")
    folder = (Path(root) if root else tmp_path) / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless Chromium with the flags above, closed on exit."""
    executable = chromium_path()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(executable), headless=True, args=list(FLAGS), timeout=WAIT_MS * 2
        )
        try:
            yield browser
        finally:
            await browser.close()


async def new_page(browser: Browser, width: int = DESKTOP, **options: Any) -> Page:
    """A page in a fresh context (no cookies, no cache), every wait bounded by WAIT_MS."""
    context = await browser.new_context(viewport={"width": width, "height": HEIGHT}, **options)
    context.set_default_timeout(WAIT_MS)
    context.set_default_navigation_timeout(WAIT_MS)
    return await context.new_page()


async def screenshots(page: Page, folder: Path, name: str, widths: Sequence[int] = (DESKTOP, MOBILE)) -> None:
    """Full-page PNGs of the page at each width: <folder>/<name>.<width>.png; the width is restored."""
    before = page.viewport_size
    for width in widths:
        await page.set_viewport_size({"width": width, "height": HEIGHT})
        await page.screenshot(path=folder / f"{name}.{width}.png", full_page=True, animations="disabled")
    if before is not None:
        await page.set_viewport_size(before)


async def axe_run(page: Page, script: str) -> list[dict[str, Any]]:
    """Inject axe-core into the page and return its violations (every impact)."""
    if not await page.evaluate("() => typeof window.axe !== 'undefined'"):
        # Evaluated through the DevTools protocol: the page's Content-Security-Policy (no inline
        # scripts) stays in force for the page itself and is tested as served.
        await page.evaluate(f"{script}\n;undefined")
    result = await page.evaluate(
        """async () => {
            const r = await axe.run(document, {resultTypes: ['violations']});
            return r.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
                nodes: v.nodes.map(n => ({target: n.target.join(' '), summary: n.failureSummary}))
            }));
        }"""
    )
    return cast(list[dict[str, Any]], result)

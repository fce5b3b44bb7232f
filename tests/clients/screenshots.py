"""Refresh the screenshots in the documentation: `python -m tests.clients.screenshots docs/screenshots`.

Runs the browser and rendered-mail tests (tests/clients/test_browser.py, test_mail_render.py) with
their artefacts in a temporary folder, then copies the documented ones into the given folder:

* page-<page>.<width>.png: each page of the subscriber's journey, 1280 and 390 px wide;
* keyboard-focus.png: the subscription form's button focused from the keyboard;
* mail-<kind>.<lang>.<width>.png: the confirmation and a bulletin, English and French, as a mail
  client shows the HTML part 600 and 375 px wide.

Fails (exit status 1) if a test fails or is skipped, or if an expected screenshot is missing: the
checks need Chromium and axe-core (see tests/clients/browser.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = ("tests/clients/test_browser.py", "tests/clients/test_mail_render.py")
PAGES = (
    "archive", "announcement", "subscribe", "subscribe-error", "subscribed", "confirmed",
    "preferences", "preferences-saved", "unsubscribe", "unsubscribed",
)  # fmt: skip
PAGE_WIDTHS = (1280, 390)
MAILS = ("confirmation.en", "confirmation.fr", "bulletin.en", "bulletin.fr")
MAIL_WIDTHS = (600, 375)
RUN_WITHIN = 300  # seconds for the whole test run


def wanted(artefacts: Path) -> dict[Path, str]:
    """Artefact -> name in the documentation folder."""
    files = {
        artefacts / "browser" / f"{page}.{width}.png": f"page-{page}.{width}.png"
        for page in PAGES
        for width in PAGE_WIDTHS
    }
    files[artefacts / "browser" / "keyboard-submit.png"] = "keyboard-focus.png"
    files.update(
        {
            artefacts / "mail" / f"mail-{mail}.{width}.png": f"mail-{mail}.{width}.png"
            for mail in MAILS
            for width in MAIL_WIDTHS
        }
    )
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.clients.screenshots", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("folder", type=Path, help="where to write the screenshots, e.g. docs/screenshots")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="announce-screens-") as temporary:
        artefacts = Path(temporary)
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS]
        env = {**os.environ, "ANNOUNCE_ARTEFACTS": str(artefacts), "CI": "true"}  # CI: no silent skips
        done = subprocess.run(command, cwd=REPO, env=env, timeout=RUN_WITHIN, check=False)
        if done.returncode != 0:
            print(
                f"the checks failed (exit status {done.returncode}): no screenshot written", file=sys.stderr
            )
            return 1
        files = wanted(artefacts)
        missing = [str(path.relative_to(artefacts)) for path in files if not path.is_file()]
        if missing:
            print(f"missing artefacts: {', '.join(missing)}", file=sys.stderr)
            return 1
        args.folder.mkdir(parents=True, exist_ok=True)
        for source, name in files.items():
            shutil.copyfile(source, args.folder / name)
    print(f"wrote {len(files)} screenshots to {args.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# --- Browser, rendered mail and accessibility checks (tests/clients/test_browser.py,
# tests/clients/test_mail_render.py): Debian's Chromium driven by Playwright for Python (the
# `test` extra installs it; `playwright install` is never run: the tests use /usr/bin/chromium),
# fonts for stable screenshots, and axe-core from npm, outside the repository. Idempotent.
if ! command -v chromium >/dev/null || ! fc-list 2>/dev/null | grep -qi "Liberation Sans"; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
    # The pages use system-ui (DejaVu Sans here), the mails Arial (Liberation Sans, same metrics).
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        chromium fonts-dejavu-core fonts-liberation
fi
AXE_PREFIX="${ANNOUNCE_AXE_PREFIX:-$HOME/.cache/announce-axe}"
if [ ! -f "$AXE_PREFIX/node_modules/axe-core/axe.min.js" ]; then
    npm install --prefix "$AXE_PREFIX" --no-audit --no-fund --no-save --loglevel=error axe-core@4
fi

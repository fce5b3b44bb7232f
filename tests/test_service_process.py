"""The real `announce run` process: drop, edit, delete files while it watches; clean SIGTERM shutdown."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import feedparser
import httpx
import pytest

from tests.conftest import release_text
from tests.processes import RunningService, drop, running_service

pytestmark = pytest.mark.slow
WAIT = 10.0  # generous bound for "within about 2 seconds" on a loaded CI machine


@pytest.fixture
def service(tmp_path: Path) -> Iterator[RunningService]:
    # Only the watcher can notice changes within the test: the periodic rescan is an hour away.
    with running_service(tmp_path, scan_interval=3600, settle_seconds=0.3) as running:
        yield running


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def atom_titles(base: str) -> list[str]:
    return [e.title for e in feedparser.parse(httpx.get(f"{base}/feed.atom", timeout=5).content).entries]


def test_drop_edit_delete_while_running(service: RunningService) -> None:
    base, inbox = service.base, service.inbox
    assert atom_titles(base) == []
    drop(inbox, "news.md", release_text(title="Fresh news", date="2026-11-20"))
    wait_for(lambda: atom_titles(base) == ["Fresh news"], "the new release on the feed")
    assert httpx.get(f"{base}/announcements/news", timeout=5).status_code == 200

    drop(inbox, "news.md", release_text(title="Corrected news", date="2026-11-20"))
    wait_for(lambda: atom_titles(base) == ["Corrected news"], "the edit on the feed")
    entry = feedparser.parse(httpx.get(f"{base}/feed.atom", timeout=5).content).entries[0]
    assert entry.id.endswith(":news")

    (inbox / "news.md").unlink()
    wait_for(lambda: atom_titles(base) == [], "the deletion on the feed")
    assert httpx.get(f"{base}/announcements/news", timeout=5).status_code == 404


def test_sigterm_shuts_down_cleanly(service: RunningService) -> None:
    process = service.process
    process.send_signal(signal.SIGTERM)
    # uvicorn finishes the shutdown, then re-raises SIGTERM so the exit status says why it stopped.
    assert process.wait(timeout=WAIT) in (0, -signal.SIGTERM)
    log = service.log.read_text()
    assert "Application shutdown complete" in log
    assert "service stopped" in log
    assert "Traceback" not in log

"""The real `announce run` process: drop, edit, delete files while it watches; clean SIGTERM shutdown."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import feedparser
import httpx
import pytest

from tests.conftest import REPO, release_text

pytestmark = pytest.mark.slow
WAIT = 10.0  # generous bound for "within about 2 seconds" on a loaded CI machine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    inbox = tmp_path / "announcements"
    inbox.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "ANNOUNCE_ANNOUNCEMENTS_DIR": str(inbox),
        "ANNOUNCE_DATA_DIR": str(tmp_path / "var"),
        "ANNOUNCE_TEMPLATES_DIR": str(REPO / "templates"),
        "ANNOUNCE_SCAN_INTERVAL": "3600",  # only the watcher can notice changes within the test
        "ANNOUNCE_SETTLE_SECONDS": "0.3",
    }
    log = (tmp_path / "service.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "run", "--port", str(port), "--config", str(REPO / "config.yaml")],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _healthy(base), "service to start")
        yield base, inbox, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        log.close()


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def atom_titles(base: str) -> list[str]:
    return [e.title for e in feedparser.parse(httpx.get(f"{base}/feed.atom", timeout=5).content).entries]


def drop(inbox: Path, name: str, text: str) -> None:
    # What careful operators (and rsync, scp) do: write elsewhere, rename into place.
    tmp = inbox / f".{name}.part"
    tmp.write_text(text, encoding="utf-8")
    tmp.rename(inbox / name)


def test_drop_edit_delete_while_running(service: tuple[str, Path, subprocess.Popen[bytes]]) -> None:
    base, inbox, _ = service
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


def test_sigterm_shuts_down_cleanly(service: tuple[str, Path, subprocess.Popen[bytes]]) -> None:
    _, inbox, process = service
    process.send_signal(signal.SIGTERM)
    # uvicorn finishes the shutdown, then re-raises SIGTERM so the exit status says why it stopped.
    assert process.wait(timeout=WAIT) in (0, -signal.SIGTERM)
    log = (inbox.parent / "service.log").read_text()
    assert "Application shutdown complete" in log
    assert "service stopped" in log
    assert "Traceback" not in log

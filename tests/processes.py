"""The real `announce run` process in tests: a free port, its environment, start, health, stop by PID."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
START_WITHIN = 20.0  # seconds; a loaded CI machine imports slowly


@dataclass(frozen=True)
class RunningService:
    """A started service: its URL, drop folder, process and log file."""

    base: str
    inbox: Path
    process: subprocess.Popen[bytes]
    log: Path


def free_port() -> int:
    """A port nothing listens on right now (the service binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def healthy(base: str) -> bool:
    """True once /healthz answers 200."""
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def drop(inbox: Path, name: str, text: str) -> None:
    """What careful operators (and rsync, scp) do: write under a temporary name, rename into place."""
    part = inbox / f".{name}.part"
    part.write_text(text, encoding="utf-8")
    part.rename(inbox / name)


def start_service(folder: Path, port: int, log: Path, **settings: object) -> subprocess.Popen[bytes]:
    """`announce run` rooted in `folder`, with extra settings as ANNOUNCE_<KEY> variables."""
    env = {
        **os.environ,
        "ANNOUNCE_ANNOUNCEMENTS_DIR": str(folder / "announcements"),
        "ANNOUNCE_DATA_DIR": str(folder / "var"),
        "ANNOUNCE_TEMPLATES_DIR": str(REPO / "templates"),
        **{f"ANNOUNCE_{key.upper()}": str(value) for key, value in settings.items()},
    }
    command = [
        sys.executable,
        "-m",
        "service",
        "run",
        "--port",
        str(port),
        "--config",
        str(REPO / "config.yaml"),
    ]
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT)


@contextmanager
def running_service(folder: Path, **settings: object) -> Iterator[RunningService]:
    """Start the service, wait until it is healthy, and kill it (only it) afterwards."""
    (folder / "announcements").mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = folder / "service.log"
    process = start_service(folder, port, log, base_url=base, **settings)
    try:
        deadline = time.monotonic() + START_WITHIN
        while not healthy(base):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "timed out waiting for the service to start"
            time.sleep(0.05)
        yield RunningService(base, folder / "announcements", process, log)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)

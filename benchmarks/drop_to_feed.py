"""Drop-to-feed latency: time from a file renamed into announcements/ to its entry on /feed.atom.

Runs the real `announce run` process on SQLite in a temporary folder, drops N releases one at a
time (write elsewhere, rename into place), and polls the feed with If-None-Match until each appears.
Prints p50 / p95 / max, and the ratio of p50 to the settle interval (the floor the design imposes:
a file is read only once it has not changed for that long). The service runs pinned to CPU 1, this
process (dropping files and polling the feed) to CPU 0.

    python benchmarks/drop_to_feed.py [--drops 50] [--settle 0.5] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib as lib
import httpx

REPO = lib.REPO
RELEASE = "---\ntitle: Benchmark release {n}\ndate: 2026-11-{day:02d}\n---\n\nBody of release {n}.\n"


def measure(base: str, inbox: Path, drops: int) -> list[float]:
    latencies: list[float] = []
    etag = ""
    with httpx.Client(base_url=base, timeout=5) as client:
        for n in range(drops):
            tmp = inbox / f".drop-{n}.md.part"
            tmp.write_text(RELEASE.format(n=n, day=1 + n % 28), encoding="utf-8")
            started = time.monotonic()
            tmp.rename(inbox / f"drop-{n}.md")
            marker = f"Benchmark release {n}<"
            while time.monotonic() - started < 30:
                response = client.get("/feed.atom", headers={"If-None-Match": etag} if etag else {})
                if response.status_code == 200:
                    etag = response.headers["etag"]
                    if marker in response.text:
                        break
                time.sleep(0.01)
            else:
                raise SystemExit(f"release {n} never appeared")
            latencies.append(time.monotonic() - started)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drops", type=int, default=50)
    parser.add_argument("--settle", type=float, default=0.5)
    parser.add_argument("--smoke", action="store_true", help="5 drops")
    args = parser.parse_args()
    if args.smoke:
        args.drops = 5
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {lib.SENDER_CPU})
    with tempfile.TemporaryDirectory() as tmp:
        inbox = Path(tmp, "announcements")
        inbox.mkdir()
        port = lib.free_port()
        env = {
            **os.environ,
            "ANNOUNCE_ANNOUNCEMENTS_DIR": str(inbox),
            "ANNOUNCE_DATA_DIR": str(Path(tmp, "var")),
            "ANNOUNCE_TEMPLATES_DIR": str(REPO / "templates"),
            "ANNOUNCE_SETTLE_SECONDS": str(args.settle),
            "ANNOUNCE_LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, "-m", "service", "run", "--port", str(port)]
        command += ["--config", str(REPO / "config.yaml")]
        process = subprocess.Popen(lib.pinned(lib.SINK_CPU, command), cwd=tmp, env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            lib.wait_healthy(base, process, timeout=30)
            latencies = measure(base, inbox, args.drops)
        finally:
            process.terminate()
            process.wait(timeout=30)
    p50 = statistics.median(latencies)
    p95 = statistics.quantiles(latencies, n=20, method="inclusive")[18] if len(latencies) > 1 else p50
    print(f"drops: {len(latencies)}  settle_seconds: {args.settle}")
    print(f"drop-to-feed p50 {p50:.3f} s  p95 {p95:.3f} s  max {max(latencies):.3f} s")
    verdict = "met" if p50 <= 1.5 else "MISSED"
    print(f"p50 / settle interval: {p50 / args.settle:.2f}x   target p50 <= 1.5 s: {verdict}")


if __name__ == "__main__":
    main()

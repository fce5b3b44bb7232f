"""Feed serving: requests per second for GET /feed.atom (200, and 304 with If-None-Match), with wrk.

The real `announce run` process (SQLite, one process, as deployed) serves a feed of `--releases`
releases; nginx (Debian package nginx-light, one process, `master_process off`) serves the same
bytes as a static file, in the same run: the reference. A second reference shows the floor of the
Python stack: the same uvicorn (httptools, uvloop: as the service runs it) running a bare ASGI
function that answers with the same bytes and ETag, no framework, no database. Each server is
pinned to CPU 1 and wrk (one thread, `--connections` keep-alive connections) to CPU 0; the six
cases are interleaved round by round, and the medians compared.

    python benchmarks/feed_serving.py [--rounds 5] [--seconds 5] [--connections 16] [--releases 60]
                                      [--profile] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import benchlib as lib
import httpx

NGINX_TARGET = 0.25
# Where the service's CPU goes while wrk runs, for --profile (first matching stage wins).
STAGES: dict[str, list[str]] = {
    # SQLAlchemy's async layer runs the query in a greenlet: its frames show without the caller's.
    "store: site_version() query (SQLAlchemy, aiosqlite)": [
        "site_version (service/store/releases.py", "sqlalchemy/", "aiosqlite/", "greenlet",
    ],
    "views.feed (cache lookup)": ["Views.feed", "Views._cached", "Views._site_version"],
    "published views (routing, validators, response)": ["service/web/published.py"],
    "prometheus metrics": ["prometheus_client/"],
    "starlette / fastapi (middleware, routing, response)": ["starlette/", "fastapi/"],
    "uvicorn (HTTP parsing, writing)": ["uvicorn/", "h11/", "httptools/"],
    "event loop": ["asyncio/", "uvloop/"],
}  # fmt: skip
CONFIG = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    types {{ application/atom+xml atom; }}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000000;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {tmp}/static;
        etag on;
    }}
}}
"""
KEY_FUNCTIONS = [
    "Releases.site_version", "Views.feed", "service/web/published.py", "prometheus_client/",
    "sqlalchemy/", "aiosqlite/", "httptools/", "starlette/", "fastapi/", "uvicorn/",
]  # fmt: skip
RELEASE = """\
---
title: Benchmark release {n} - the institute opens a new laboratory for {topic}
date: {date}
summary: >-
  Release {n} of the feed-serving benchmark, with a summary of about the length a press office
  writes, so that the feed has the size of a real one.
topics: [{topic}]
lang: en
---

*Paris, {day}.* {paragraph}

## Background

{paragraph}

{paragraph}
"""
PARAGRAPH = (
    "The institute announced today a programme of research and partnerships with companies and public "
    "laboratories, to develop technology transfer and innovation in the region over several years. "
) * 3


def write_releases(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    start = datetime(2024, 1, 1, 9, tzinfo=UTC)
    for n in range(count):
        date = start + timedelta(days=n)
        text = RELEASE.format(
            n=n, date=date.isoformat(), day=f"{date:%d %B %Y}", topic=("research", "industry")[n % 2],
            paragraph=PARAGRAPH.strip(),
        )  # fmt: skip
        (folder / f"{date:%Y-%m-%d}-release-{n}.md").write_text(text, encoding="utf-8")


def start_nginx(tmp: Path, body: bytes) -> tuple[subprocess.Popen[bytes], int]:
    """nginx as our own child on a free port, serving `body` as /feed.atom; stop it by PID."""
    static = tmp / "static"
    static.mkdir()
    (static / "feed.atom").write_bytes(body)
    port = lib.free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(CONFIG.format(tmp=tmp, port=port), encoding="utf-8")
    command = ["nginx", "-p", str(tmp), "-e", str(tmp / "nginx-error.log"), "-c", str(conf)]
    process = subprocess.Popen(lib.pinned(lib.SINK_CPU, command), stdout=subprocess.DEVNULL)
    lib.wait_listening(port)
    return process, port


def serve_bare(port: int, feed: Path) -> None:
    """The Python floor (`--serve-bare`): uvicorn as the service runs it, and a bare ASGI function."""
    import uvicorn

    from service.runtime import event_loop_factory

    body = feed.read_bytes()
    etag = b'W/"bare-' + str(len(body)).encode() + b'"'
    ok = [(b"content-type", b"application/atom+xml; charset=utf-8"), (b"etag", etag)]
    ok.append((b"content-length", str(len(body)).encode()))

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if (b"if-none-match", etag) in scope["headers"]:
            await send({"type": "http.response.start", "status": 304, "headers": [(b"etag", etag)]})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200, "headers": ok})
        await send({"type": "http.response.body", "body": body})

    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False,
                            lifespan="off", server_header=False)  # fmt: skip
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:  # the service's loop too
        runner.run(uvicorn.Server(config).serve())


def start_bare(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = lib.free_port()
    command = [sys.executable, __file__, "--serve-bare", str(port), str(tmp / "static" / "feed.atom")]
    process = subprocess.Popen(lib.pinned(lib.SINK_CPU, command), stdout=subprocess.DEVNULL)
    lib.wait_listening(port)
    return process, port


def wrk(url: str, seconds: float, connections: int, etag: str | None) -> float:
    """Requests per second wrk measured (one thread, pinned to CPU 0)."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s"]
    if etag is not None:
        command += ["-H", f"If-None-Match: {etag}"]
    done = subprocess.run(
        lib.pinned(lib.SENDER_CPU, [*command, url]),
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    if errors:
        raise SystemExit(f"wrk saw {errors[1]} error responses from {url}:\n{done.stdout}")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    if rate is None:
        raise SystemExit(f"no rate in wrk's output:\n{done.stdout}\n{done.stderr}")
    return float(rate[1])


def validators(url: str) -> tuple[bytes, str]:
    """The body and ETag of a 200, after checking that the ETag gives a bodiless 304."""
    first = httpx.get(url, timeout=10)
    first.raise_for_status()
    etag = first.headers["etag"]
    again = httpx.get(url, headers={"If-None-Match": etag}, timeout=10)
    if again.status_code != 304 or again.content:
        raise SystemExit(f"{url} with If-None-Match {etag}: {again.status_code}, {len(again.content)} bytes")
    return first.content, etag


def profile(pid: int, case: str, url: str, etag: str | None, args: argparse.Namespace) -> None:
    """Sample the service with py-spy during one more wrk run of `case` (not counted)."""
    raw = Path(tempfile.mkdtemp(prefix="feed-profile-")) / f"{case.replace(' ', '-')}.collapsed"
    spy = lib.record_profile(pid, args.seconds, raw)
    if spy is None:
        return
    time.sleep(0.5)  # py-spy attaches
    wrk(url, args.seconds, args.connections, etag)
    spy.wait(timeout=args.seconds + 60)
    print(f"py-spy profile of the service serving {case} under wrk; raw: {raw}")
    print(lib.summarise_profile(raw, STAGES, inclusive=KEY_FUNCTIONS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--releases", type=int, default=60, help="releases in the archive (feed_size is 50)")
    parser.add_argument("--profile", action="store_true", help="then profile the service under wrk (py-spy)")
    parser.add_argument("--smoke", action="store_true", help="1 round of 1-second runs, 10 releases")
    parser.add_argument("--serve-bare", nargs=2, metavar=("PORT", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(int(args.serve_bare[0]), Path(args.serve_bare[1]))
        return
    if args.smoke:
        args.rounds, args.seconds, args.releases = 1, 1.0, 10
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: apt-get install wrk nginx-light")
    tmp = Path(tempfile.mkdtemp(prefix="feed-serving-"))
    write_releases(tmp / "announcements", args.releases)
    port = lib.free_port()
    service = lib.start_service(tmp, port, cpu=lib.SINK_CPU, log=tmp / "service.log", settle_seconds=0)
    nginx: subprocess.Popen[bytes] | None = None
    bare: subprocess.Popen[bytes] | None = None
    rates: dict[str, list[float]] = {}
    try:
        base = f"http://127.0.0.1:{port}"
        lib.wait_healthy(base, service)
        body, etag = validators(f"{base}/feed.atom")
        entries = body.count(b"<entry>")
        if entries != min(args.releases, 50):
            raise SystemExit(f"the feed has {entries} entries, not {min(args.releases, 50)}: see {tmp}")
        nginx, nginx_port = start_nginx(tmp, body)
        static_body, static_etag = validators(f"http://127.0.0.1:{nginx_port}/feed.atom")
        assert static_body == body
        bare, bare_port = start_bare(tmp)
        bare_body, bare_etag = validators(f"http://127.0.0.1:{bare_port}/feed.atom")
        assert bare_body == body
        cases = {
            "ours 200": (f"{base}/feed.atom", None),
            "ours 304": (f"{base}/feed.atom", etag),
            "nginx 200": (f"http://127.0.0.1:{nginx_port}/feed.atom", None),
            "nginx 304": (f"http://127.0.0.1:{nginx_port}/feed.atom", static_etag),
            "bare 200": (f"http://127.0.0.1:{bare_port}/feed.atom", None),
            "bare 304": (f"http://127.0.0.1:{bare_port}/feed.atom", bare_etag),
        }
        print(
            f"GET /feed.atom: {len(body):,} bytes, {entries} entries; wrk 1 thread, "
            f"{args.connections} connections, {args.seconds:g} s per run, {args.rounds} rounds; "
            f"servers on CPU {lib.SINK_CPU}, wrk on CPU {lib.SENDER_CPU}"
        )
        rates = {case: [] for case in cases}
        for round_no in range(args.rounds):
            for case in lib.interleaved(list(cases), round_no):
                url, tag = cases[case]
                rates[case].append(wrk(url, args.seconds, args.connections, tag))
                time.sleep(0.2)
            figures = "  ".join(f"{c} {rates[c][-1]:,.0f}/s" for c in cases)
            print(f"round {round_no + 1}: {figures}", flush=True)
        if args.profile:
            for case in ("ours 200", "ours 304"):
                profile(service.pid, case, *cases[case], args)
    finally:
        for server in (nginx, bare):
            if server is not None:
                lib.stop(server, timeout=10)
        lib.stop(service)
        shutil.rmtree(tmp, ignore_errors=True)
    m = {case: lib.median(values) for case, values in rates.items()}
    print("median requests/s: " + "  ".join(f"{c} {v:,.0f}" for c, v in m.items()))
    for status in ("200", "304"):
        ratio = m[f"ours {status}"] / m[f"nginx {status}"]
        print(
            f"ours / nginx, {status}: {ratio:.3f}  (target >= {NGINX_TARGET:.2f}: "
            f"{lib.verdict(ratio >= NGINX_TARGET)})"
        )
        print(
            f"ours / bare uvicorn, {status}: {m[f'ours {status}'] / m[f'bare {status}']:.2f};  "
            f"bare uvicorn / nginx, {status}: {m[f'bare {status}'] / m[f'nginx {status}']:.3f}"
        )
    faster = m["ours 304"] / m["ours 200"]
    print(f"ours 304 / ours 200: {faster:.2f}  (target >= 1.00: {lib.verdict(faster >= 1.0)})")


if __name__ == "__main__":
    main()

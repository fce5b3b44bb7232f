"""Fan-out: publish one release to N confirmed subscribers through the real service code, into smtp-sink.

End to end = the scan that finds the new release file publishes it and queues one ledger row per
subscriber (`jobs.scan`), then the dispatcher task the service runs (`Dispatcher.run`, woken by the
scan) claims batches, renders the bulletin once, personalises it per subscriber, sends it over the
SMTP pool and records every outcome in the ledger (SQLite with synchronous=FULL, or PostgreSQL),
until every row is recorded. Also timed: publication (start of the scan) to the first and to the
last message accepted by the sink (a 250 after the data).

References, measured in the same run and interleaved round by round (each sender a fresh process
pinned to CPU 0, the sink pinned to CPU 1):

- `smtp-source` (Postfix's test client): N messages of the bulletin's size over the same number of
  persistent connections: the physical limit of this sink on this machine;
- transport alone: the same `SmtpMailer`, pool and connection count sending the bulletin's
  pre-serialised bytes N times (no database, no rendering): end to end / this is our own overhead.

    python benchmarks/fanout.py [--subscribers 10000] [--database sqlite|postgresql] [--rounds 5]
                                [--pool 10] [--batch 500] [--profile] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import benchlib as lib
import smtp_transport as transport

SAMPLE = lib.REPO / "announcements" / "2020-02-12-carnot-label.md"
SENDER = "press@example.org"
FAN_OUT_TARGET, STRETCH, OVERHEAD_TARGET = 0.25, 0.50, 0.85
# Where the fan-out's CPU goes, for --profile (a sample counts for the first stage its stack shows).
STAGES: dict[str, list[str]] = {
    "publish + queue (jobs.scan)": ["scan (service/jobs.py"],
    "ledger: claim": ["claim (service/store/ledger.py"],
    "ledger: record outcomes": ["record (service/store/ledger.py"],
    "ledger: pending() count": ["pending (service/store/ledger.py"],
    "ledger: lease renewal": ["renew (service/store/ledger.py"],
    "compose (render + personalise)": ["compose (service/delivery/compose.py"],
    "smtp: SmtpMailer / aiosmtplib": ["service/delivery/smtp.py", "aiosmtplib/"],
    # SQLAlchemy's async layer runs statements in greenlets, whose frames show without the caller's.
    "database (SQLAlchemy, driver)": ["sqlalchemy/", "aiosqlite/", "asyncpg/", "sqlite3/", "greenlet"],
    "dispatcher (gather, metrics, logs)": ["service/delivery/dispatch.py"],
    "asyncio event loop": ["asyncio/"],
}


# Functions whose inclusive share of the samples the profile summary lists.
KEY_FUNCTIONS = [
    "Dispatcher._send_batch", "Composer._envelope", "Tokens.make", "MessageTemplate.personalise",
    "SmtpMailer.send", "_wire_payload", "SMTP.execute_command", "Ledger.claim", "Ledger.record",
    "Ledger.pending", "sqlalchemy/", "aiosqlite/", "asyncpg/",
]  # fmt: skip


# ---- what runs in the measured process (`--child KIND`) -----------------------------------------


def settings_for(folder: Path, database_url: str, port: int, pool: int, batch: int, outbox: bool) -> Any:
    from service.config import Settings

    return Settings(
        announcements_dir=folder / "announcements", data_dir=folder / "var",
        templates_dir=lib.REPO / "templates", database_url=database_url,
        mail_transport="outbox" if outbox else "smtp", outbox_dir=folder / "outbox",
        smtp_port=port, smtp_pool_size=pool, dispatch_batch=batch, settle_seconds=0,
        base_url="https://press.example.org", mail_from=SENDER, log_level="WARNING",
    )  # fmt: skip


def write_release(folder: Path, now: datetime) -> None:
    """The sample release, dated an hour ago (recent enough to be mailed), as news.md."""
    text = SAMPLE.read_text(encoding="utf-8").replace(
        "date: 2020-02-12T09:00:00+01:00", f"date: {(now - timedelta(hours=1)).isoformat()}"
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "news.md").write_text(text, encoding="utf-8")


async def fan_out(
    port: int, subscribers: int, pool: int, batch: int, database_url: str, folder: Path, outbox: bool
) -> dict[str, Any]:
    """Publish and deliver one bulletin to `subscribers` seeded subscribers; timings and memory."""
    from service import jobs
    from service.models import Outcome, SendResult
    from service.runtime import build

    settings = settings_for(folder, database_url, port, pool, batch, outbox)
    parts = build(settings)
    await parts.database.migrate()
    now = datetime.now(UTC)
    await lib.seed_subscribers(parts.database.engine, subscribers, now)
    write_release(settings.announcements_dir, now)
    rss_ready = lib.rss_mb()

    # Count the answers as they arrive: the first and last 250 are the figures a reader sees.
    send = parts.mailer.send
    answered, failed = 0, 0
    first = last = 0.0
    finished = asyncio.Event()

    async def counting_send(envelope: Any) -> SendResult:
        nonlocal answered, failed, first, last
        result = await send(envelope)
        answered += 1
        if result.outcome is Outcome.SENT:
            last = time.perf_counter()
            first = first or last
        else:
            failed += 1
        if answered >= subscribers:
            finished.set()
        return result

    parts.mailer.send = counting_send  # type: ignore[method-assign]  # the instance the dispatcher holds
    # Wall time inside each step of the dispatcher (both lanes added up), and the sends in flight.
    spent = {"claim": 0.0, "compose": 0.0, "record": 0.0, "pending": 0.0}
    for name, owner in (("claim", parts.ledger), ("record", parts.ledger), ("pending", parts.ledger),
                        ("compose", parts.dispatcher.composer)):  # fmt: skip
        setattr(owner, name, _timed(getattr(owner, name), spent, name))
    cpu_before = lib.cpu_seconds()
    started = time.perf_counter()
    await jobs.scan(parts.jobs)  # ingest, publish, queue a row per subscriber, wake the dispatcher
    queued = time.perf_counter()
    stop = asyncio.Event()
    dispatcher = asyncio.create_task(parts.dispatcher.run(stop), name="dispatcher")
    try:
        async with asyncio.timeout(120 + subscribers / 100):
            await finished.wait()
            stop.set()
            await dispatcher  # returns once the batch in progress is recorded and nothing is due
    finally:
        stop.set()
    done = time.perf_counter()
    cpu = lib.cpu_seconds() - cpu_before
    progress = await parts.ledger.progress()
    sent = sum(n for state, n in progress.get("bulletin news", {}).items() if state.value == "sent")
    await parts.close()
    if sent != subscribers or failed:
        raise SystemExit(f"{sent} of {subscribers} recorded as sent, {failed} not accepted: {progress}")
    return {
        "queue": queued - started,
        "first": first - started,
        "last": last - started,
        "total": done - started,
        "cpu": cpu,
        "rss_ready": rss_ready,
        "peak_rss": lib.peak_rss_mb(),
        **{f"in_{name}": seconds for name, seconds in spent.items()},
    }


def _timed(method: Any, spent: dict[str, float], name: str) -> Any:
    """`method` (a coroutine method), adding the wall time of each call to spent[name]."""

    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await method(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - started

    return timed


async def bulletin(folder: Path) -> bytes:
    """The serialised bulletin of the sample release for one subscriber (its size sets the references')."""
    from service import jobs
    from service.runtime import build

    settings = settings_for(folder, f"sqlite+aiosqlite:///{folder / 'one.db'}", 25, 1, 1, True)
    parts = build(settings)
    await parts.database.migrate()
    now = datetime.now(UTC)
    write_release(settings.announcements_dir, now)
    await jobs.scan(parts.jobs)
    release = await parts.releases.get("news")
    assert release is not None
    envelope = await parts.dispatcher.composer.single(release, "s0000000@example.com", now)
    await parts.close()
    return envelope.data


async def transport_alone(port: int, count: int, pool: int, data: bytes) -> dict[str, Any]:
    """The same SmtpMailer and pool sending `data`, already serialised, `count` times."""
    from service.delivery.mailer import Envelope
    from service.delivery.smtp import SmtpMailer, SmtpOptions
    from service.models import Outcome

    mailer = SmtpMailer(SmtpOptions(port=port, pool_size=pool, local_hostname="bench.test"))
    numbers = iter(range(count))
    failures: list[str] = []

    async def worker() -> None:  # `pool` sends in flight, as the dispatcher keeps them
        for n in numbers:
            envelope = Envelope(SENDER, f"s{n:07d}@example.com", data, f"<m{n}@example.org>", f"m{n}")
            result = await mailer.send(envelope)
            if result.outcome is not Outcome.SENT:
                failures.append(result.reply)

    cpu_before = lib.cpu_seconds()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(pool)))
    elapsed = time.perf_counter() - started
    cpu = lib.cpu_seconds() - cpu_before
    await mailer.close()
    if failures:
        raise SystemExit(f"{len(failures)} messages not sent, e.g. {failures[0]}")
    return {"total": elapsed, "cpu": cpu, "peak_rss": lib.peak_rss_mb()}


def child(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="fanout-") as tmp:
        folder = Path(tmp)
        if args.child == "fanout":
            result = lib.run(
                fan_out(args.port, args.subscribers, args.pool, args.batch, args.url, folder, args.outbox)
            )
        elif args.child == "bulletin":
            Path(args.out).write_bytes(lib.run(bulletin(folder)))
            result = {}
        else:
            data = Path(args.out).read_bytes()
            result = lib.run(transport_alone(args.port, args.subscribers, args.pool, data))
    print(json.dumps(result))


# ---- orchestration ------------------------------------------------------------------------------------


def run_child(kind: str, args: argparse.Namespace, port: int, **extra: object) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", kind, "--port", str(port)]
    command += ["--subscribers", str(args.subscribers), "--pool", str(args.pool), "--batch", str(args.batch)]
    for key, value in extra.items():
        if value is True:
            command.append(f"--{key}")
        elif value not in (None, False):
            command += [f"--{key}", str(value)]
    budget = 600 + args.subscribers / 50
    done = subprocess.run(
        lib.pinned(lib.SENDER_CPU, command), capture_output=True, text=True, timeout=budget, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{kind} round failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def smtp_source(port: int, count: int, pool: int, size: int) -> float:
    """Seconds for Postfix's smtp-source to send `count` messages of `size` payload bytes."""
    command = ["smtp-source", "-d", "-s", str(pool), "-m", str(count), "-l", str(size)]
    command += ["-f", SENDER, "-t", "s0000000@example.com", f"127.0.0.1:{port}"]
    started = time.perf_counter()
    subprocess.run(
        lib.pinned(lib.SENDER_CPU, command), check=True, stdout=subprocess.DEVNULL, timeout=600 + count / 100
    )
    return time.perf_counter() - started


def profile(args: argparse.Namespace, port: int, url: str) -> None:
    """One more fan-out under py-spy (not timed); prints where its CPU samples fall."""
    spy = lib.py_spy()
    if spy is None:
        print("profile: py-spy not found (pip install py-spy)")
        return
    raw = Path(tempfile.mkdtemp(prefix="fanout-profile-")) / "fanout.collapsed"
    command = [sys.executable, __file__, "--child", "fanout", "--port", str(port), "--url", url]
    command += ["--subscribers", str(args.subscribers), "--pool", str(args.pool), "--batch", str(args.batch)]
    spy_command = [spy, "record", "--gil", "-r", "250", "-f", "raw", "-o", str(raw), "--", *command]
    subprocess.run(lib.pinned(lib.SENDER_CPU, spy_command), check=True, capture_output=True, timeout=3600)
    print(f"py-spy profile of one fan-out ({args.subscribers:,} subscribers, {args.database}); raw: {raw}")
    print(lib.summarise_profile(raw, STAGES, inclusive=KEY_FUNCTIONS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pool", type=int, default=10, help="SMTP connections (smtp_pool_size)")
    parser.add_argument("--batch", type=int, default=500, help="ledger rows per claim (dispatch_batch)")
    parser.add_argument("--sink", choices=["auto", "smtp-sink", "aiosmtpd", "minimal"], default="auto")
    parser.add_argument("--profile", action="store_true", help="then profile one fan-out with py-spy")
    parser.add_argument("--smoke", action="store_true", help="tiny and quick: 300 subscribers, 1 round")
    parser.add_argument("--child", choices=["fanout", "bulletin", "transport"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--outbox", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.smoke:
        args.subscribers, args.rounds = 300, 1
    if args.database == "postgresql" and not lib.postgres_available():
        raise SystemExit(f"PostgreSQL not reachable at {lib.POSTGRES_ADMIN} (ANNOUNCE_BENCH_POSTGRES)")
    sink = args.sink
    if sink == "auto":
        sink = "smtp-sink" if shutil.which("smtp-sink") else "minimal"
    kinds = ["fanout", "transport"] + (["smtp-source"] if shutil.which("smtp-source") else [])
    if "smtp-source" not in kinds:
        print("smtp-source not found (Debian package postfix): that reference is skipped")
    work = Path(tempfile.mkdtemp(prefix="fanout-bench-"))
    message = work / "bulletin.eml"
    run_child("bulletin", args, 0, out=message)
    size = len(message.read_bytes())
    print(
        f"fan-out of one {size:,}-byte bulletin to {args.subscribers:,} subscribers; {args.database}; "
        f"pool of {args.pool}; batches of {args.batch}; sink {sink}; {args.rounds} rounds; "
        f"{lib.pinning_note()}"
    )
    sink_process, port = transport.start_sink(sink)
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    fan: list[dict[str, Any]] = []
    cpu: dict[str, list[float]] = {"fanout": [], "transport": []}
    try:
        for round_no in range(args.rounds):
            for kind in lib.interleaved(kinds, round_no):
                if kind == "fanout":
                    with lib.throwaway_database(args.database, work) as url:
                        result = run_child("fanout", args, port, url=url)
                    fan.append(result)
                    seconds = result["total"]
                elif kind == "transport":
                    result = run_child("transport", args, port, out=message)
                    seconds = result["total"]
                else:
                    seconds = smtp_source(port, args.subscribers, args.pool, size)
                rates[kind].append(args.subscribers / seconds)
                if kind in cpu:
                    cpu[kind].append(1e6 * result["cpu"] / args.subscribers)
            last = fan[-1]
            print(
                f"round {round_no + 1}: " + "  ".join(f"{k} {rates[k][-1]:,.0f}/s" for k in kinds)
                + f"  (fan-out: queued {last['queue']:.2f} s, first 250 {last['first']:.2f} s, "
                f"last 250 {last['last']:.2f} s, all recorded {last['total']:.2f} s, "
                f"peak RSS {last['peak_rss']:.0f} MB)",
                flush=True,
            )  # fmt: skip
        if args.profile:
            with lib.throwaway_database(args.database, work) as url:
                profile(args, port, url)
    finally:
        lib.stop(sink_process, timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    report(args, rates, fan, cpu)


def report(
    args: argparse.Namespace,
    rates: dict[str, list[float]],
    fan: list[dict[str, Any]],
    cpu: dict[str, list[float]],
) -> None:
    m = {kind: lib.median(values) for kind, values in rates.items()}
    print("median msg/s: " + "  ".join(f"{k} {v:,.0f}" for k, v in m.items()))
    print(
        f"median fan-out timeline: queued {lib.median([f['queue'] for f in fan]):.2f} s, "
        f"first message accepted {lib.median([f['first'] for f in fan]):.2f} s, "
        f"publication to last message accepted {lib.median([f['last'] for f in fan]):.2f} s, "
        f"all outcomes recorded {lib.median([f['total'] for f in fan]):.2f} s"
    )
    print(
        f"CPU per message (median): fan-out {lib.median(cpu['fanout']):.0f} us, "
        f"transport alone {lib.median(cpu['transport']):.0f} us; "
        f"peak RSS of the fan-out {max(f['peak_rss'] for f in fan):.0f} MB"
    )
    steps = ", ".join(
        f"{name} {lib.median([1e6 * f[f'in_{name}'] / args.subscribers for f in fan]):.0f} us"
        for name in ("claim", "compose", "record", "pending")
    )
    print(f"dispatcher steps, wall time per message (both lanes added up, median): {steps}")
    overhead = m["fanout"] / m["transport"]
    print(
        f"end to end / transport alone: {overhead:.2f}  "
        f"(target >= {OVERHEAD_TARGET:.2f}: {lib.verdict(overhead >= OVERHEAD_TARGET)})"
    )
    if "smtp-source" in m:
        limit = m["fanout"] / m["smtp-source"]
        print(
            f"end to end / smtp-source: {limit:.2f}  (target >= {FAN_OUT_TARGET:.2f}: "
            f"{lib.verdict(limit >= FAN_OUT_TARGET)}; "
            f"stretch >= {STRETCH:.2f}: {lib.verdict(limit >= STRETCH)})"
        )
        print(f"transport alone / smtp-source: {m['transport'] / m['smtp-source']:.2f}")


if __name__ == "__main__":
    main()

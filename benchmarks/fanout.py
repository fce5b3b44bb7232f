"""Fan-out: one release to N confirmed subscribers through the real service code, into an SMTP sink.

End to end = queue the bulletins (publication), then claim, render once, personalise, send over
the SMTP pool and record every outcome in the ledger (SQLite, synchronous=FULL), until the ledger
is empty. Reference, measured in the same run and interleaved: the same SmtpMailer and pool sending
N pre-serialised messages of the same size (the transport alone). The ratio is our own overhead.
Each round runs in a fresh process pinned to CPU 0; the sink is pinned to CPU 1.

    python benchmarks/fanout.py [--subscribers 10000] [--rounds 3] [--sink auto|smtp-sink|aiosmtpd|minimal]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import smtp_transport as transport

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


async def fan_out(port: int, subscribers: int, pool: int, folder: Path) -> dict[str, float]:
    """Seconds to queue and to deliver one bulletin to every subscriber, and the message size."""
    from sqlalchemy import insert

    from service import jobs
    from service.config import Settings
    from service.runtime import build
    from service.store.schema import subscribers as table

    settings = Settings(
        announcements_dir=folder / "announcements", data_dir=folder / "var", templates_dir=REPO / "templates",
        mail_transport="smtp", smtp_port=port, smtp_pool_size=pool, base_url="https://press.example.org",
        mail_from="press@example.org", settle_seconds=0, dispatch_batch=500,
    )  # fmt: skip
    parts = build(settings)
    await parts.database.migrate()
    now = datetime.now(UTC)
    rows = [
        {"email": f"s{n:07d}@example.com", "state": "confirmed", "all_topics": True, "lang": "en",
         "frequency": "immediate", "generation": 1, "consent_method": "import", "consent_source": "bench",
         "consent_at": now, "created_at": now, "confirmed_at": now}
        for n in range(subscribers)
    ]  # fmt: skip
    async with parts.database.engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            await conn.execute(insert(table), rows[start : start + 5000])
    sample = (REPO / "announcements" / "2020-02-12-carnot-label.md").read_text(encoding="utf-8")
    fresh = sample.replace(
        "date: 2020-02-12T09:00:00+01:00", f"date: {(now - timedelta(hours=1)).isoformat()}"
    )
    settings.announcements_dir.mkdir(parents=True)
    (settings.announcements_dir / "news.md").write_text(fresh, encoding="utf-8")
    started = time.perf_counter()
    await jobs.scan(parts.jobs)
    queued = time.perf_counter()
    await parts.dispatcher.drain()
    done = time.perf_counter()
    progress = await parts.ledger.progress()
    sent = sum(n for state, n in progress["bulletin news"].items() if state.value == "sent")
    envelope = parts.dispatcher.composer.single(await parts.releases.get("news"), "s0000000@example.com", now)  # type: ignore[arg-type]
    await parts.close()
    if sent != subscribers:
        raise SystemExit(f"only {sent} of {subscribers} sent: {progress}")
    return {"queue": queued - started, "total": done - started, "size": len(envelope.data)}


def run_round(kind: str, port: int, args: argparse.Namespace, size: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", kind, "--port", str(port)]
    command += ["--subscribers", str(args.subscribers), "--pool", str(args.pool), "--size", str(size)]
    done = subprocess.run(
        transport.pinned(0, command), check=True, capture_output=True, text=True, timeout=1800
    )
    return dict(json.loads(done.stdout))


def child(args: argparse.Namespace) -> None:
    if args.child == "fanout":
        with tempfile.TemporaryDirectory() as tmp:
            result = asyncio.run(fan_out(args.port, args.subscribers, args.pool, Path(tmp)))
    else:
        seconds = asyncio.run(transport.send_with_mailer(args.port, args.subscribers, args.size, args.pool))
        result = {"total": seconds}
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pool", type=int, default=10)
    parser.add_argument("--sink", choices=["auto", "smtp-sink", "aiosmtpd", "minimal"], default="auto")
    parser.add_argument("--child", choices=["fanout", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    sink = args.sink if args.sink != "auto" else ("smtp-sink" if shutil.which("smtp-sink") else "minimal")
    process, port = transport.start_sink(sink)
    try:
        fan, ref, size = [], [], 0
        for n in range(args.rounds):
            result = run_round("fanout", port, args, 0)
            size = int(result["size"])
            fan.append(args.subscribers / result["total"])
            ref.append(args.subscribers / run_round("reference", port, args, size)["total"])
            print(f"round {n + 1}: fan-out {fan[-1]:,.0f} msg/s (queueing {result['queue']:.2f} s), "
                  f"transport alone {ref[-1]:,.0f} msg/s")  # fmt: skip
    finally:
        process.terminate()
        process.wait(timeout=10)
    median_fan, median_ref = statistics.median(fan), statistics.median(ref)
    print(f"sink: {sink}; {args.subscribers:,} subscribers; {size:,}-byte bulletin; pool of {args.pool}")
    print(f"fan-out end to end (median): {median_fan:,.0f} msg/s; transport alone: {median_ref:,.0f} msg/s")
    print(f"ratio end to end / transport: {median_fan / median_ref:.2f} (target >= 0.85)")


if __name__ == "__main__":
    main()

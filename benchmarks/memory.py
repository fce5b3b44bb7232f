"""Memory: peak RSS of the fan-out (the same measured process as fanout.py) by audience size.

Each size runs in a fresh process (pinned to CPU 0, the sink to CPU 1) that seeds N confirmed
subscribers inside the database (no Python objects), then publishes one release and delivers it
to all of them through the real dispatcher into `smtp-sink` (or the file outbox with `--outbox`),
and reports its peak resident set size (VmHWM). The reference, in the same run: the same process
with a 1,000-subscriber audience, i.e. the fixed footprint (interpreter, libraries, templates,
one batch). Streaming shows as a peak that does not grow with N.

    python benchmarks/memory.py [--sizes 100000 1000000] [--database sqlite|postgresql] [--outbox] [--smoke]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import benchlib as lib
import fanout
import smtp_transport as transport

RSS_TARGET_MB, TARGET_SIZE = 300.0, 1_000_000
REFERENCE_SIZE = 1_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pool", type=int, default=10)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--outbox", action="store_true", help="write .eml files instead of sending")
    parser.add_argument("--smoke", action="store_true", help="sizes 300 and 3,000")
    args = parser.parse_args()
    if args.smoke:
        args.sizes = [300, 3000]
    if args.database == "postgresql" and not lib.postgres_available():
        raise SystemExit(f"PostgreSQL not reachable at {lib.POSTGRES_ADMIN} (ANNOUNCE_BENCH_POSTGRES)")
    sink = "smtp-sink" if shutil.which("smtp-sink") else "minimal"
    where = "the file outbox" if args.outbox else sink
    print(f"peak RSS of one fan-out by audience; {args.database}; into {where}; {lib.pinning_note()}")
    work = Path(tempfile.mkdtemp(prefix="memory-bench-"))
    sink_process, port = transport.start_sink(sink)
    peaks: dict[int, dict[str, float]] = {}
    try:
        for size in [REFERENCE_SIZE, *args.sizes]:
            args.subscribers = size
            with lib.throwaway_database(args.database, work) as url:
                result = fanout.run_child("fanout", args, port, url=url, outbox=args.outbox)
            peaks[size] = result
            print(
                f"{size:>9,} subscribers: peak RSS {result['peak_rss']:.0f} MB (ready to publish "
                f"{result['rss_ready']:.0f} MB); {size / result['total']:,.0f} msg/s, "
                f"last message accepted {result['last']:.1f} s after publication",
                flush=True,
            )
    finally:
        lib.stop(sink_process, timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    reference = peaks[REFERENCE_SIZE]["peak_rss"]
    for size in args.sizes:
        peak = peaks[size]["peak_rss"]
        line = f"{size:,}: peak {peak:.0f} MB, {peak / reference:.2f}x the {REFERENCE_SIZE:,}-subscriber run"
        if size == TARGET_SIZE:
            line += f"  (target <= {RSS_TARGET_MB:.0f} MB: {lib.verdict(peak <= RSS_TARGET_MB)})"
        print(line)


if __name__ == "__main__":
    main()

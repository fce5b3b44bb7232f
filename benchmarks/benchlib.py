"""Helpers shared by the benchmarks: CPU pinning, throw-away databases, seeding, the service process,
peak memory, medians and ratios, and a py-spy profile summary. Nothing here is timed itself."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# The PostgreSQL server benchmarks create their throw-away databases on (trust authentication).
POSTGRES_ADMIN = os.environ.get("ANNOUNCE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
SENDER_CPU, SINK_CPU = 0, 1  # the process measured on one core, what it talks to on the other


# ---- processes -------------------------------------------------------------------------------------


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` on the event loop the service runs on (uvloop where installed)."""
    from service.runtime import event_loop_factory

    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(coroutine)


def pinned(cpu: int, command: Sequence[str]) -> list[str]:
    """`command` run on one CPU with taskset (unchanged when there is no taskset or only one CPU)."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(cpu), *command]
    return list(command)


def pinning_note() -> str:
    if pinned(0, []):
        return f"measured process on CPU {SENDER_CPU}, its peer on CPU {SINK_CPU}"
    return "not pinned (no taskset or one CPU)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s")


def stop(process: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    """SIGTERM a child we started (by its PID), then SIGKILL it if it does not exit in time."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM), in MB (10^6 bytes)."""
    return _status_kb("VmHWM") / 1000


def rss_mb() -> float:
    """This process's resident set size now (VmRSS), in MB."""
    return _status_kb("VmRSS") / 1000


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    times = os.times()
    return times.user + times.system


# ---- databases --------------------------------------------------------------------------------------


async def _admin(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_ADMIN)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def postgres_available() -> bool:
    try:
        asyncio.run(_admin("SELECT 1"))
    except Exception:
        return False
    return True


@contextmanager
def throwaway_database(kind: str, folder: Path) -> Iterator[str]:
    """An empty database of `kind` ('sqlite' or 'postgresql') for one run; dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{folder / f'bench-{uuid.uuid4().hex[:8]}.db'}"
        return
    name = f"announce_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        base = POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        yield f"{base}/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


_SEED_COLUMNS = (
    "email, state, all_topics, lang, frequency, generation, consent_method, consent_source, "
    "consent_at, created_at, confirmed_at"
)
_SEED_VALUES = "'confirmed', :yes, 'en', 'immediate', 1, 'import', 'bench', :now, :now, :now"
SEED_SQL = {
    # Rows generated inside the database: seeding a million costs seconds and no memory in Python.
    "sqlite": (
        "WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM n WHERE x < :count - 1) "
        f"INSERT INTO subscribers ({_SEED_COLUMNS}) "
        f"SELECT printf('s%07d@example.com', x), {_SEED_VALUES} FROM n"
    ),
    "postgresql": (
        f"INSERT INTO subscribers ({_SEED_COLUMNS}) "
        f"SELECT 's' || lpad(x::text, 7, '0') || '@example.com', {_SEED_VALUES} "
        "FROM generate_series(0, :count - 1) AS x"
    ),
}


async def seed_subscribers(engine: Any, count: int, now: datetime) -> None:
    """`count` confirmed, all-topics, immediate subscribers s0000000@example.com ... (as
    tests/conftest.py `seed_confirmed` seeds them, but generated by the database)."""
    from sqlalchemy import Boolean, bindparam, text

    from service.store.schema import UTCDateTime

    if count <= 0:
        return
    statement = text(SEED_SQL[engine.dialect.name]).bindparams(
        bindparam("count", count),
        bindparam("yes", True, type_=Boolean),
        bindparam("now", now, type_=UTCDateTime),
    )
    async with engine.begin() as conn:
        await conn.execute(statement)
        if engine.dialect.name == "postgresql":
            await conn.execute(text("ANALYZE subscribers"))


# ---- the service as a process ------------------------------------------------------------------------


def service_env(folder: Path, **settings: object) -> dict[str, str]:
    """Environment for `python -m service run` with its state in `folder`."""
    env = {
        **os.environ,
        "ANNOUNCE_ANNOUNCEMENTS_DIR": str(folder / "announcements"),
        "ANNOUNCE_DATA_DIR": str(folder / "var"),
        "ANNOUNCE_TEMPLATES_DIR": str(REPO / "templates"),
        "ANNOUNCE_LOG_LEVEL": "WARNING",
    }
    env.update({f"ANNOUNCE_{key.upper()}": str(value) for key, value in settings.items()})
    return env


def start_service(
    folder: Path, port: int, cpu: int | None = None, log: Path | None = None, **settings: object
) -> subprocess.Popen[bytes]:
    """`announce run` on 127.0.0.1:`port` (optionally pinned to `cpu`); stop it with `stop()`."""
    command = [sys.executable, "-m", "service", "run", "--port", str(port)]
    command += ["--config", str(REPO / "config.yaml")]
    output = log.open("ab") if log is not None else subprocess.DEVNULL
    return subprocess.Popen(
        pinned(cpu, command) if cpu is not None else command,
        cwd=folder,
        env=service_env(folder, **settings),
        stdout=output,
        stderr=subprocess.STDOUT if log is not None else None,
    )


def wait_healthy(base: str, process: subprocess.Popen[bytes] | None = None, timeout: float = 120) -> float:
    """Seconds until GET /healthz answers 200 (raises if the process exits or time runs out)."""
    import httpx

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"the service exited with status {process.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    raise SystemExit(f"the service did not answer within {timeout:g} s")


# ---- figures ----------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def interleaved(kinds: Sequence[str], round_no: int) -> list[str]:
    """The order of the senders in round `round_no`: rotated, so none is always first or last."""
    shift = round_no % len(kinds)
    return [*kinds[shift:], *kinds[:shift]]


# ---- profiles -----------------------------------------------------------------------------------------

_FRAME = re.compile(r"^(?P<function>.+?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def summarise_profile(
    raw: Path, stages: Mapping[str, Sequence[str]], top: int = 15, inclusive: Sequence[str] = ()
) -> str:
    """A text summary of py-spy's raw (collapsed) output: each stage's share of the samples (a sample
    counts for the first stage, in `stages` order, any of whose patterns occurs in its stack), the
    functions with the most samples of their own, and the share of the samples whose stack shows
    each of `inclusive` (a function and everything it calls)."""
    total = 0
    by_stage: Counter[str] = Counter()
    own: Counter[str] = Counter()
    within: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        stage = next((name for name, marks in stages.items() if any(m in stack for m in marks)), "other")
        by_stage[stage] += n
        within.update({mark: n for mark in inclusive if mark in stack})
        leaf = stack.rsplit(";", 1)[-1]
        match = _FRAME.match(leaf)
        own[f"{match['function']} ({_short(match['file'])})" if match else leaf] += n
    if total == 0:
        return "no samples"
    lines = [f"{total} samples; share of samples by stage (first matching stage wins):"]
    lines += [f"  {name:<34} {100 * n / total:5.1f} %" for name, n in by_stage.most_common()]
    lines.append(f"top {top} functions by own samples:")
    lines += [f"  {100 * n / total:5.1f} %  {name}" for name, n in own.most_common(top)]
    if inclusive:
        lines.append("inclusive share (the function and what it calls):")
        lines += [f"  {100 * within[mark] / total:5.1f} %  {mark}" for mark in inclusive]
    return "\n".join(lines)


def _short(path: str) -> str:
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def py_spy() -> str | None:
    """The py-spy executable beside this Python, or on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def children_of(pid: int) -> list[int]:
    """PIDs of the direct children of process `pid` (ours: a process we started)."""
    kids: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            kids += [int(child) for child in (task / "children").read_text().split()]
    except OSError:  # it has exited
        return []
    return kids


def record_profile(pid: int, seconds: float, raw: Path) -> subprocess.Popen[bytes] | None:
    """Start py-spy sampling the running process `pid` for `seconds` (raw output into `raw`);
    None when py-spy is not installed. Wait on the returned process for the file.

    `--gil`: only the thread holding the GIL is sampled, i.e. Python at work. Without it, py-spy on
    this VM also counts threads blocked in a queue (aiosqlite's, the executor's) as busy."""
    spy = py_spy()
    if spy is None:
        print("profile: py-spy not found (pip install py-spy)")
        return None
    command = [spy, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds)))]
    command += ["--gil", "--rate", "250", "--format", "raw", "--output", str(raw)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

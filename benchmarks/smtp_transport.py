"""SMTP transport throughput: SmtpMailer sending N pre-serialised messages into a loopback sink.

The sink is Postfix's `smtp-sink` when installed (Debian package `postfix`), else an aiosmtpd sink
(which saturates near ~1,350 msg/s, so then it is the sink, not the sender, that is measured at the
top end); `--sink minimal` picks a bare asyncio sink that costs far less per message.
References measured in the same run, interleaved round by round:

- `smtp-source` (if installed): same message size, same number of connections: the physical limit;
- a minimal asyncio SMTP client (same lock-step MAIL/RCPT/DATA, no library): what the sink absorbs
  from a sender with almost no per-message cost;
- aiosmtplib's own `sendmail()` over the same number of connections, the bytes pre-serialised.

Every sender runs in its own process pinned to CPU 0, the sink to CPU 1 (`taskset`, when present).
Prints msg/s per round, the medians, and ratios of the medians.

    python benchmarks/smtp_transport.py [--messages 5000] [--size 8192] [--connections 10] [--rounds 5]
                                        [--sink auto|smtp-sink|aiosmtpd|minimal] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import free_port, pinned, run, wait_listening

REPO = Path(__file__).resolve().parents[1]
SENDER = "bench@example.org"
RECIPIENT = "sink@example.net"


# ---- the message -------------------------------------------------------------------------------


def message(size: int) -> bytes:
    """A plain-text message of exactly `size` bytes, CRLF line endings, a few lines starting with '.'."""
    head = (
        f"From: News <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: Benchmark bulletin\r\n"
        "Message-ID: <bench@example.org>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    ).encode()
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n"
    body = bytearray(head)
    n = 0
    while len(body) + len(line) <= size - 2:
        body += b"." + line[1:] if n % 25 == 0 else line
        n += 1
    body += b"x" * (size - 2 - len(body)) + b"\r\n"
    return bytes(body)


# ---- senders (each runs in its own process: `--send KIND`) -------------------------------------------


async def send_with_mailer(port: int, count: int, size: int, connections: int) -> float:
    sys.path.insert(0, str(REPO))
    from service.delivery.mailer import Envelope
    from service.delivery.smtp import SmtpMailer, SmtpOptions
    from service.models import Outcome

    data = message(size)
    envelopes = [Envelope(SENDER, RECIPIENT, data, f"<m{n}@example.org>", key=f"m{n}") for n in range(count)]
    mailer = SmtpMailer(SmtpOptions(port=port, pool_size=connections, local_hostname="bench.test"))
    queue = iter(envelopes)
    failures: list[str] = []

    async def worker() -> None:  # the dispatcher's shape: `connections` sends in flight
        for envelope in queue:
            result = await mailer.send(envelope)
            if result.outcome is not Outcome.SENT:
                failures.append(result.reply)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    await mailer.close()
    if failures:
        raise SystemExit(f"{len(failures)} messages not sent, e.g. {failures[0]}")
    return elapsed


async def send_with_aiosmtplib(port: int, count: int, size: int, connections: int) -> float:
    import aiosmtplib

    data = message(size)
    remaining = iter(range(count))

    async def worker() -> None:
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=port, local_hostname="bench.test", start_tls=False
        )
        await client.connect()
        for _ in remaining:
            await client.sendmail(SENDER, [RECIPIENT], data)
        await client.quit()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - started


async def send_raw(port: int, count: int, size: int, connections: int) -> float:
    """A minimal client on asyncio streams: the same lock-step dialogue, no library in between."""
    payload = message(size).replace(b"\r\n.", b"\r\n..") + b".\r\n"
    mail, rcpt = f"MAIL FROM:<{SENDER}>\r\n".encode(), f"RCPT TO:<{RECIPIENT}>\r\n".encode()
    remaining = iter(range(count))

    async def reply(reader: asyncio.StreamReader, expect: bytes) -> None:
        while True:
            line = await reader.readuntil(b"\r\n")
            if line[3:4] != b"-":
                break
        if not line.startswith(expect):
            raise SystemExit(f"unexpected reply {line!r}")

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reply(reader, b"220")
        writer.write(b"EHLO bench.test\r\n")
        await reply(reader, b"250")
        for _ in remaining:
            writer.write(mail)
            await reply(reader, b"250")
            writer.write(rcpt)
            await reply(reader, b"250")
            writer.write(b"DATA\r\n")
            await reply(reader, b"354")
            writer.write(payload)
            await reply(reader, b"250")
        writer.write(b"QUIT\r\n")
        await reply(reader, b"221")
        writer.close()
        await writer.wait_closed()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - started


SENDERS = {"mailer": send_with_mailer, "aiosmtplib": send_with_aiosmtplib, "raw": send_raw}


# ---- the aiosmtpd sink (`--serve-aiosmtpd`) ------------------------------------------------------


async def serve_aiosmtpd() -> None:
    from aiosmtpd.smtp import SMTP, Envelope, Session

    class Sink:
        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            return "250 2.0.0 Ok: queued"

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Sink(), hostname="sink.test", loop=loop), "127.0.0.1", 0, backlog=128
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


# ---- a minimal sink (`--serve-minimal`) -----------------------------------------------------------


class MinimalSink(asyncio.Protocol):
    """Just enough SMTP to swallow lock-step transactions: far cheaper per message than aiosmtpd, so
    the sender is what gets measured when `smtp-sink` is not installed (`--sink minimal`)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = bytearray()
        self.in_data = False
        self.scanned = 0
        transport.write(b"220 sink.test ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.buffer:
            if self.in_data:
                if self.buffer.startswith(b".\r\n"):
                    end = 0
                else:
                    found = self.buffer.find(b"\r\n.\r\n", max(0, self.scanned - 4))
                    if found < 0:
                        self.scanned = len(self.buffer)
                        return
                    end = found + 2
                del self.buffer[: end + 3]
                self.in_data, self.scanned = False, 0
                self.transport.write(b"250 2.0.0 Ok: queued\r\n")
                continue
            eol = self.buffer.find(b"\r\n")
            if eol < 0:
                return
            verb = bytes(self.buffer[:4]).upper()
            del self.buffer[: eol + 2]
            if verb == b"EHLO":
                self.transport.write(b"250-sink.test\r\n250-8BITMIME\r\n250 SIZE 0\r\n")
            elif verb == b"DATA":
                self.in_data = True
                self.transport.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            elif verb == b"QUIT":
                self.transport.write(b"221 2.0.0 Bye\r\n")
                self.transport.close()
                return
            else:
                self.transport.write(b"250 2.0.0 Ok\r\n")


async def serve_minimal() -> None:
    server = await asyncio.get_running_loop().create_server(MinimalSink, "127.0.0.1", 0, backlog=128)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


# ---- orchestration ---------------------------------------------------------------------------------


def start_sink(kind: str) -> tuple[subprocess.Popen[str], int]:
    if kind == "smtp-sink":
        port = free_port()
        process = subprocess.Popen(
            pinned(1, ["smtp-sink", *sink_user(), "-c", f"127.0.0.1:{port}", "100"]),
            stdout=subprocess.DEVNULL,
            text=True,
        )
        wait_listening(port)
        return process, port
    process = subprocess.Popen(
        pinned(1, [sys.executable, __file__, f"--serve-{kind}"]), stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    port = int(process.stdout.readline())
    return process, port


def sink_user() -> list[str]:
    """smtp-sink refuses to run as root without `-u USER` (it drops privileges to it)."""
    return ["-u", "nobody"] if os.geteuid() == 0 else []


def run_sender(kind: str, port: int, args: argparse.Namespace) -> float:
    """Messages per second for one round of one sender."""
    if kind == "smtp-source":
        command = ["smtp-source", "-d", "-s", str(args.connections), "-m", str(args.messages)]
        command += ["-l", str(args.size), "-f", SENDER, "-t", RECIPIENT, f"127.0.0.1:{port}"]
        started = time.perf_counter()
        subprocess.run(pinned(0, command), check=True, stdout=subprocess.DEVNULL, timeout=600)
        return float(args.messages) / (time.perf_counter() - started)
    command = [sys.executable, __file__, "--send", kind, "--port", str(port)]
    command += ["--messages", str(args.messages), "--size", str(args.size)]
    command += ["--connections", str(args.connections)]
    done = subprocess.run(pinned(0, command), check=True, capture_output=True, text=True, timeout=600)
    return float(args.messages) / float(json.loads(done.stdout)["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sink", choices=["auto", "smtp-sink", "aiosmtpd", "minimal"], default="auto")
    parser.add_argument("--smoke", action="store_true", help="300 messages, 1 round")
    parser.add_argument("--send", choices=sorted(SENDERS), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-aiosmtpd", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-minimal", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve_aiosmtpd or args.serve_minimal:
        asyncio.run(serve_aiosmtpd() if args.serve_aiosmtpd else serve_minimal())
        return
    if args.send:
        seconds = run(SENDERS[args.send](args.port, args.messages, args.size, args.connections))
        print(json.dumps({"seconds": seconds}))
        return
    if args.smoke:
        args.messages, args.rounds = 300, 1

    sink = args.sink
    if sink == "auto":
        sink = "smtp-sink" if shutil.which("smtp-sink") else "aiosmtpd"
    if sink == "aiosmtpd":
        print("smtp-sink not found (Debian package postfix): using the aiosmtpd sink, ~1,350 msg/s at best")
    senders = ["mailer", "raw", "aiosmtplib"]
    if shutil.which("smtp-source"):
        senders.insert(1, "smtp-source")
    else:
        print("smtp-source not found (Debian package postfix): reference skipped")
    pinning = "sender on CPU 0, sink on CPU 1" if pinned(0, []) else "not pinned (no taskset or one CPU)"
    print(
        f"{args.messages} messages of {args.size} bytes, {args.connections} connections, "
        f"{args.rounds} rounds, sink {sink}, {pinning}"
    )

    process, port = start_sink(sink)
    rates: dict[str, list[float]] = {kind: [] for kind in senders}
    try:
        for round_no in range(args.rounds):
            order = senders[round_no % len(senders) :] + senders[: round_no % len(senders)]
            for kind in order:
                rates[kind].append(run_sender(kind, port, args))
            print(f"round {round_no + 1}: " + "  ".join(f"{k} {rates[k][-1]:,.0f}" for k in senders))
    finally:
        process.terminate()
        process.wait(timeout=10)

    medians = {kind: statistics.median(values) for kind, values in rates.items()}
    print("median msg/s: " + "  ".join(f"{k} {v:,.0f}" for k, v in medians.items()))
    for reference in [k for k in senders if k != "mailer"]:
        print(f"mailer / {reference}: {medians['mailer'] / medians[reference]:.2f}")


if __name__ == "__main__":
    main()

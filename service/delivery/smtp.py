"""SMTP delivery: a bounded pool of persistent connections, a shared rate limit, and each attempt
classified by where it failed (SENT / TEMPORARY / PERMANENT / UNKNOWN).

The only module that imports aiosmtplib. The transaction is driven command by command (MAIL, RCPT,
DATA, then the message) instead of `sendmail()`, because `sendmail()`/`data()` cannot tell "lost
before the message was sent" (safe to retry) from "lost after it was sent" (the server may have it).
The message is already serialised with CRLF line endings, so the hot path only checks that, stuffs
dots with `bytes.replace` and writes it once; aiosmtplib's regex normalisation and address re-parsing
are skipped.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
from dataclasses import dataclass, field
from typing import Literal

import aiosmtplib

from service.delivery.mailer import Envelope
from service.models import Outcome, SendResult

log = logging.getLogger(__name__)

_QUIT_TIMEOUT = 2.0  # seconds granted to a polite QUIT on close()
_CLOSING = 421  # "service not available, closing transmission channel": drop the connection
_LONE_LINE_ENDS = re.compile(rb"\r\n|\r|\n")
_QUOTED_LOCAL_PART = re.compile(r'^"(?:[^"\\\r\n]|\\.)*"')
_UNSAFE_IN_ADDRESS = re.compile(r'[\s<>"\x00-\x1f\x7f]')


@dataclass(frozen=True, slots=True)
class SmtpOptions:
    """How to reach the relay and how hard to push it."""

    host: str = "127.0.0.1"
    port: int = 25
    security: Literal["none", "starttls", "tls"] = "none"
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log line or a traceback
    timeout: float = 30.0  # per SMTP command (and for connecting)
    pool_size: int = 4  # max persistent connections
    rate_limit: float = 0.0  # messages per second across the pool; 0 = unlimited
    local_hostname: str | None = None  # EHLO name; default: this host's FQDN, looked up once


class _Failure(Exception):
    """One attempt ended before a 2xx after DATA; carries the classified result."""

    def __init__(self, outcome: Outcome, reply: str, *, drop: bool = False, stale: bool = False) -> None:
        super().__init__(reply)
        self.result = SendResult(outcome, reply)
        self.drop = drop  # the connection cannot be reused
        self.stale = stale  # failed before anything of this message reached the server: retry once


class _TokenBucket:
    """Paces acquisitions to `rate` per second (a bucket one token deep): each caller reserves the
    next free slot synchronously and sleeps until it, so waiters never spin and the order is fair."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._interval = 1.0 / rate
        self._next = 0.0

    def pace(self, rate: float) -> None:
        """Change the rate from the next acquisition on."""
        self._interval = 1.0 / rate

    async def acquire(self) -> None:
        now = asyncio.get_running_loop().time()
        start = max(now, self._next)
        self._next = start + self._interval
        if start > now:
            await asyncio.sleep(start - now)


class _Connection:
    """One SMTP session and what its EHLO said."""

    __slots__ = ("client", "eightbit", "in_transaction", "size", "utf8")

    def __init__(self, client: aiosmtplib.SMTP) -> None:
        self.client = client
        self.eightbit = client.supports_extension("8bitmime")
        self.utf8 = client.supports_extension("smtputf8")
        self.size = client.supports_extension("size")
        self.in_transaction = False  # MAIL accepted but the transaction not finished: RSET first

    @property
    def usable(self) -> bool:
        return self.client.is_connected


class SmtpMailer:
    """Implements `Mailer` over a pool of at most `pool_size` persistent SMTP connections.

    Connections are opened lazily, reused across messages and shared by concurrent `send()` calls;
    broken ones are dropped and replaced on the next send. `send()` never raises for a delivery failure.
    """

    def __init__(self, options: SmtpOptions) -> None:
        if options.pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        if options.rate_limit < 0:
            raise ValueError("rate_limit must not be negative")
        self._options = options
        self._slots = asyncio.Semaphore(options.pool_size)
        self._idle: list[_Connection] = []  # LIFO: the warmest connection first
        self._bucket = _TokenBucket(options.rate_limit) if options.rate_limit > 0 else None
        self._local_hostname = options.local_hostname
        self._closed = False

    def share(self, fraction: float) -> None:
        """Send at `fraction` of `rate_limit` (with N nodes sharing the relay's limit, 1/N each)."""
        if self._bucket is not None and fraction > 0:
            self._bucket.pace(self._bucket.rate * min(fraction, 1.0))

    async def send(self, envelope: Envelope) -> SendResult:
        """Attempt delivery once over a pooled connection and classify the result."""
        if self._closed:
            return SendResult(Outcome.TEMPORARY, "mailer is closed")
        try:
            payload = _wire_payload(envelope.data)
            mail_args = _mail_args(envelope, len(payload))
            rcpt_arg = _rcpt_arg(envelope.recipient)
        except _Failure as failure:
            return failure.result
        async with self._slots:
            if self._bucket is not None:
                await self._bucket.acquire()
            return await self._attempt(payload, mail_args, rcpt_arg)

    async def close(self) -> None:
        """QUIT every idle connection (briefly), then close it; connections still sending close
        when their message is done. Later sends return TEMPORARY."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(_quit(conn.client) for conn in idle))
        await asyncio.sleep(0)  # let the transports finish closing inside this loop

    # ---- one attempt -----------------------------------------------------------------------------

    async def _attempt(self, payload: bytes, mail_args: _MailArgs, rcpt_arg: bytes) -> SendResult:
        for retry in (False, True):
            try:
                conn, reused = await self._checkout()
            except _Failure as failure:
                return failure.result
            keep = False
            try:
                result = await _transact(conn, payload, mail_args, rcpt_arg, self._options.timeout)
                keep = True
                return result
            except _Failure as failure:
                keep = not failure.drop
                if failure.stale and reused and not retry:
                    continue  # the pooled connection had gone stale: once more on a fresh one
                return failure.result
            finally:
                self._checkin(conn, keep)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _checkout(self) -> tuple[_Connection, bool]:
        while self._idle:
            conn = self._idle.pop()
            if conn.usable:
                return conn, True
            conn.client.close()
        return await self._connect(), False

    def _checkin(self, conn: _Connection, keep: bool) -> None:
        if keep and conn.usable and not self._closed:
            self._idle.append(conn)
        else:
            conn.client.close()

    async def _connect(self) -> _Connection:
        o = self._options
        if self._local_hostname is None:
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        client = aiosmtplib.SMTP(
            hostname=o.host,
            port=o.port,
            username=o.username,
            password=o.password,
            local_hostname=self._local_hostname,
            timeout=o.timeout,
            use_tls=o.security == "tls",
            start_tls=o.security == "starttls",
        )
        try:
            await client.connect()
            if client.is_ehlo_or_helo_needed:  # connect() says EHLO only for STARTTLS / AUTH
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await client.helo()
        except Exception as exc:
            client.close()
            reply = f"connecting to {o.host}:{o.port} failed: {_describe(exc)}"
            if _is_setup_error(exc):  # not an outage: retrying will not help until the settings change
                log.error("smtp session setup failed (TLS, EHLO or AUTH)", extra={"reply": reply})
            raise _Failure(Outcome.TEMPORARY, reply, drop=True) from exc
        return _Connection(client)


@dataclass(frozen=True, slots=True)
class _MailArgs:
    address: bytes  # "FROM:<...>"
    params: tuple[bytes, ...]
    smtputf8: bool
    eightbit: bool
    size: int


async def _transact(
    conn: _Connection, payload: bytes, mail: _MailArgs, rcpt_arg: bytes, seconds: float
) -> SendResult:
    """MAIL, RCPT, DATA and the message on one connection; raises _Failure for anything but 2xx."""
    if mail.smtputf8 and not conn.utf8:
        # Only non-ASCII addresses need SMTPUTF8; a relay without it will never take them.
        raise _Failure(Outcome.PERMANENT, "the address is not ASCII and the server does not offer SMTPUTF8")
    if conn.in_transaction:
        reply = await _command(conn, "RSET", seconds, b"RSET", stale=True)
        if reply.code != aiosmtplib.SMTPStatus.completed:
            raise _Failure(Outcome.TEMPORARY, f"RSET: {_text(reply)}", drop=True, stale=True)
        conn.in_transaction = False

    params = list(mail.params)
    if conn.size:
        params.append(b"SIZE=%d" % mail.size)
    if mail.eightbit and conn.eightbit:
        params.append(b"BODY=8BITMIME")
    reply = await _command(conn, "MAIL FROM", seconds, b"MAIL", mail.address, *params, stale=True)
    if reply.code != aiosmtplib.SMTPStatus.completed:
        if reply.code >= 500:  # the sender or our setup is refused: nothing the recipient did
            log.error("smtp server refused MAIL FROM", extra={"reply": _text(reply)})
        raise _refused("MAIL FROM", reply, permanent_5xx=False)
    conn.in_transaction = True

    reply = await _command(conn, "RCPT TO", seconds, b"RCPT", rcpt_arg)
    if reply.code not in (aiosmtplib.SMTPStatus.completed, aiosmtplib.SMTPStatus.will_forward):
        raise _refused("RCPT TO", reply, permanent_5xx=True)

    reply = await _command(conn, "DATA", seconds, b"DATA")
    if reply.code != aiosmtplib.SMTPStatus.start_input:
        if reply.code >= 500:  # recipient accepted, transaction refused: policy or protocol trouble
            log.error("smtp server refused DATA", extra={"reply": _text(reply)})
        raise _refused("DATA", reply, permanent_5xx=False)

    reply = await _message(conn, payload, seconds)
    conn.in_transaction = False  # the final reply ends the transaction, whatever it says
    if 200 <= reply.code < 300:
        return SendResult(Outcome.SENT, _text(reply))
    raise _refused("end of DATA", reply, permanent_5xx=True)


async def _command(
    conn: _Connection, stage: str, seconds: float, *args: bytes, stale: bool = False
) -> aiosmtplib.SMTPResponse:
    """One command before the message is sent: any transport trouble is TEMPORARY."""
    try:
        return await conn.client.execute_command(*args, timeout=seconds)
    except aiosmtplib.SMTPTimeoutError as exc:
        raise _Failure(Outcome.TEMPORARY, f"{stage}: no reply within {seconds:g} s", drop=True) from exc
    except (aiosmtplib.SMTPException, OSError) as exc:
        # Disconnected (a pooled connection the server had closed, typically) or a garbled reply.
        lost = isinstance(exc, ConnectionError)
        raise _Failure(
            Outcome.TEMPORARY, f"{stage}: {_describe(exc)}", drop=True, stale=stale and lost
        ) from exc


async def _message(conn: _Connection, payload: bytes, seconds: float) -> aiosmtplib.SMTPResponse:
    """Write the dot-stuffed message after 354 and read the final reply.

    Done on the protocol, as aiosmtplib's `data()` would, but split so that a failure to write (nothing
    left us: TEMPORARY) is told apart from a lost reply (the server may have the message: UNKNOWN).
    """
    protocol = conn.client.protocol
    try:
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        protocol.write(payload)
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise _Failure(Outcome.TEMPORARY, f"DATA: {_describe(exc)}", drop=True) from exc
    try:
        return await protocol.read_response(timeout=seconds)
    except aiosmtplib.SMTPTimeoutError as exc:
        reply = f"no reply within {seconds:g} s after the message was sent; the server may have accepted it"
        raise _Failure(Outcome.UNKNOWN, reply, drop=True) from exc
    except (aiosmtplib.SMTPException, OSError) as exc:
        reply = f"{_describe(exc)} after the message was sent; the server may have accepted it"
        raise _Failure(Outcome.UNKNOWN, reply, drop=True) from exc


def _refused(stage: str, reply: aiosmtplib.SMTPResponse, *, permanent_5xx: bool) -> _Failure:
    """Classify a reply that is not the expected one."""
    text = _text(reply)
    if reply.code == _CLOSING:
        return _Failure(Outcome.TEMPORARY, text, drop=True)
    if 500 <= reply.code < 600:
        return _Failure(Outcome.PERMANENT if permanent_5xx else Outcome.TEMPORARY, text)
    if 400 <= reply.code < 500:
        return _Failure(Outcome.TEMPORARY, text)
    # An unexpected 2xx/3xx: the session is out of step with us; start afresh.
    return _Failure(Outcome.TEMPORARY, f"{stage}: unexpected reply {text}", drop=True)


# ---- the bytes on the wire -----------------------------------------------------------------------


def _wire_payload(data: bytes) -> bytes:
    """The DATA payload: CRLF line endings (normally already so: checked, not rewritten), a final CRLF,
    dot-stuffing (RFC 5321 4.5.2) and the terminating `.` line."""
    crlf = data.count(b"\r\n")
    if data.count(b"\r") != crlf or data.count(b"\n") != crlf:
        data = _LONE_LINE_ENDS.sub(b"\r\n", data)  # bare CR or LF: never sent as such (smuggling)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..") + b".\r\n"


def _mail_args(envelope: Envelope, size: int) -> _MailArgs:
    sender = envelope.sender
    if sender and _unsafe(sender):
        log.error("smtp sender address cannot be sent", extra={"sender": sender})
        raise _Failure(Outcome.TEMPORARY, f"the sender address {sender!r} cannot be sent in MAIL FROM")
    utf8 = not (sender.isascii() and envelope.recipient.isascii())
    address = b"FROM:<" + sender.encode("utf-8" if utf8 else "ascii") + b">"
    return _MailArgs(
        address=address,
        params=(b"SMTPUTF8",) if utf8 else (),
        smtputf8=utf8,
        eightbit=not envelope.data.isascii(),
        size=size - 3,  # RFC 1870: the octets of the message, without the terminating "."
    )


def _rcpt_arg(recipient: str) -> bytes:
    if not recipient or _unsafe(recipient):
        raise _Failure(Outcome.PERMANENT, f"the recipient address {recipient!r} cannot be sent in RCPT TO")
    return b"TO:<" + recipient.encode("utf-8") + b">"


def _unsafe(address: str) -> bool:
    """Whitespace, brackets or controls outside a quoted local part could inject SMTP parameters."""
    return _UNSAFE_IN_ADDRESS.search(_QUOTED_LOCAL_PART.sub("", address, count=1)) is not None


# ---- small helpers -------------------------------------------------------------------------------


def _text(reply: aiosmtplib.SMTPResponse) -> str:
    """The reply as a server would print it: `550 5.1.1 No such user` (continuation lines joined)."""
    return f"{reply.code} {reply.message}".replace("\n", " ").strip()


def _is_setup_error(exc: BaseException) -> bool:
    """TLS, EHLO or AUTH refused, as opposed to the server being unreachable, busy or slow."""
    if isinstance(exc, ssl.SSLError):
        return True
    unreachable = (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPTimeoutError, OSError, TimeoutError)
    return not isinstance(exc, unreachable)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code > 0:
        return f"{exc.code} {exc.message}".replace("\n", " ")
    return str(exc) or type(exc).__name__


async def _quit(client: aiosmtplib.SMTP) -> None:
    """Say QUIT and wait briefly for the 221; close regardless."""
    try:
        async with asyncio.timeout(_QUIT_TIMEOUT):
            await client.quit(timeout=_QUIT_TIMEOUT)
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        pass
    finally:
        client.close()

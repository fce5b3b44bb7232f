"""A real SMTP server for tests, in the test's own event loop, with fault injection.

aiosmtpd's protocol served by `loop.create_server()` on 127.0.0.1, port 0 (no `Controller`, no
thread), as aiosmtplib's own test-suite does. Use it as a context manager or as the `mail_server`
fixture (import the fixture into your test module or conftest)::

    async with smtp_server() as server:
        options = SmtpOptions(port=server.port)
        server.refuse("gone@example.org", "550 5.1.1 No such user")  # at RCPT, until clear()
        server.fail_next(3, "451 4.3.0 Try later")    # at MAIL FROM; n=None: until clear()
        server.reject_data(1, "554 5.6.0 Rejected")   # final reply to the message
        server.disconnect_after_data(1)               # message read, connection closed, no reply
        server.stall_rcpt(1); server.stall_data(1)    # never reply (until clear() or stop())
        await server.stop(); await server.start()     # down and back up on the same port
        server.drop_sessions()                        # close open sessions, keep listening
        server.require_auth("user", "password")       # offer AUTH PLAIN/LOGIN (no TLS), only this login
        server.messages                               # accepted messages, in order (`Received`)
        server.dropped                                # read in full, then cut off without a reply

A reply starting with 421 also closes the connection, as real servers do. Counters (`connections`,
`active`, `max_active`, `transactions`, `rsets`, `quits`) let tests check pooling and politeness;
`logins` lists the AUTH attempts (login names, and whether each succeeded).
`await server.wait_idle()` waits until every session has ended.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = ["Received", "SmtpServer", "mail_server", "smtp_server"]

HOSTNAME = "smtpd.test"  # given explicitly: aiosmtpd would otherwise look up this host's FQDN


@dataclass(frozen=True, slots=True)
class Received:
    """One message as the server got it (the DATA content, transparency dots removed)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    mail_options: tuple[str, ...]


class _Fault:
    """A reply (or misbehaviour) for the next `remaining` occurrences; None: until cleared."""

    def __init__(self, remaining: int | None, reply: str = "") -> None:
        self.remaining = remaining
        self.reply = reply

    def take(self) -> bool:
        if self.remaining is None:
            return True
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True


class SmtpServer:
    """The server's state and its fault switches (see the module docstring)."""

    def __init__(self) -> None:
        self.port = 0
        self.messages: list[Received] = []  # accepted with a 2xx
        self.dropped: list[Received] = []  # read in full, then the connection closed without a reply
        self.connections = 0  # sessions accepted since creation
        self.active = 0  # sessions open now
        self.max_active = 0  # most sessions open at once
        self.transactions = 0  # MAIL FROM commands seen
        self.rsets = 0
        self.quits = 0
        self.logins: list[tuple[str, bool]] = []  # (login, accepted) for each AUTH
        self._credentials: tuple[str, str] | None = None
        self._refused: dict[str, str] = {}
        self._mail_fault = _Fault(0)
        self._data_fault = _Fault(0)
        self._disconnect = _Fault(0)
        self._stall_rcpt = _Fault(0)
        self._stall_data = _Fault(0)
        self._release = asyncio.Event()
        self._listener: asyncio.Server | None = None
        self._sessions: set[_Session] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._queue_ids = itertools.count(1)

    # ---- fault switches --------------------------------------------------------------------------

    def refuse(self, address: str, reply: str) -> None:
        """Answer RCPT TO:<address> with `reply` (e.g. "550 5.1.1 No such user")."""
        self._refused[address] = reply

    def fail_next(self, n: int | None, reply: str) -> None:
        """Answer the next `n` MAIL FROM commands (every one if None) with `reply`."""
        self._mail_fault = _Fault(n, reply)

    def reject_data(self, n: int | None, reply: str) -> None:
        """Answer the next `n` messages, after reading them, with `reply` instead of 250."""
        self._data_fault = _Fault(n, reply)

    def disconnect_after_data(self, n: int | None = 1) -> None:
        """Read the next `n` messages in full, then close the connection without replying."""
        self._disconnect = _Fault(n)

    def stall_rcpt(self, n: int | None = 1) -> None:
        """Never answer the next `n` RCPT TO commands (until clear() or stop())."""
        self._stall_rcpt = _Fault(n)

    def stall_data(self, n: int | None = 1) -> None:
        """Read the next `n` messages, then never answer (until clear() or stop())."""
        self._stall_data = _Fault(n)

    def require_auth(self, login: str, password: str) -> None:
        """Offer AUTH (PLAIN, LOGIN; plain TCP, as a local relay may) to new sessions; accept only this."""
        self._credentials = (login, password)

    def clear(self) -> None:
        """Remove every fault and release stalled replies."""
        self._refused.clear()
        for name in ("_mail_fault", "_data_fault", "_disconnect", "_stall_rcpt", "_stall_data"):
            setattr(self, name, _Fault(0))
        self._release.set()
        self._release = asyncio.Event()

    # ---- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on 127.0.0.1 (a free port the first time, the same port afterwards)."""
        if self._listener is not None:
            return
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            lambda: _Session(self, loop), "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._listener.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and cut every open session (a crash, as the client sees it)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        self.drop_sessions()
        self._release.set()
        self._release = asyncio.Event()
        if listener is not None:
            await listener.wait_closed()
        await self.wait_idle()

    def drop_sessions(self) -> None:
        """Close every open session now, as an idle timeout would; keep listening."""
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()

    async def wait_idle(self, within: float = 5.0) -> None:
        """Wait until no session is open."""
        async with asyncio.timeout(within):
            await self._idle.wait()

    # ---- called by the sessions ------------------------------------------------------------------

    def _opened(self, session: _Session) -> None:
        self._sessions.add(session)
        self.connections += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self._idle.clear()

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: object
    ) -> AuthResult:
        # handled=False: aiosmtpd then answers a failure itself (535), as a real server does.
        if not isinstance(data, LoginPassword) or self._credentials is None:
            return AuthResult(success=False, handled=False)
        login, password = data.login.decode(), data.password.decode()
        accepted = (login, password) == self._credentials
        self.logins.append((login, accepted))
        return AuthResult(success=accepted, handled=False, auth_data=login if accepted else None)

    def _closed(self, session: _Session) -> None:
        if session in self._sessions:
            self._sessions.discard(session)
            self.active -= 1
            if not self._sessions:
                self._idle.set()


class _Session(SMTP):
    """aiosmtpd's protocol, counted and handed a fault-injecting handler."""

    def __init__(self, owner: SmtpServer, loop: asyncio.AbstractEventLoop) -> None:
        auth: dict[str, object] = {}
        if owner._credentials is not None:
            auth = {"authenticator": owner._authenticate, "auth_require_tls": False}
        super().__init__(_Handler(owner), hostname=HOSTNAME, enable_SMTPUTF8=True, loop=loop, **auth)  # type: ignore[arg-type]
        self._owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._owner._opened(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        self._owner._closed(self)


def _close_after_reply(server: SMTP) -> None:
    """Close once the reply being returned has been written (the write happens before the loop turns)."""
    transport = server.transport
    if transport is not None:
        asyncio.get_running_loop().call_soon(transport.close)


def _received(envelope: Envelope) -> Received:
    assert envelope.mail_from is not None
    assert envelope.original_content is not None
    return Received(
        envelope.mail_from,
        tuple(envelope.rcpt_tos),
        bytes(envelope.original_content),
        tuple(envelope.mail_options),
    )


class _Handler:
    """aiosmtpd handler hooks; each hook replies for itself (so aiosmtpd's defaults never apply)."""

    def __init__(self, owner: SmtpServer) -> None:
        self._owner = owner

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        owner = self._owner
        owner.transactions += 1
        if owner._mail_fault.take():
            if owner._mail_fault.reply.startswith("421"):
                _close_after_reply(server)
            return owner._mail_fault.reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        owner = self._owner
        if owner._stall_rcpt.take():
            await owner._release.wait()
        reply = owner._refused.get(address)
        if reply is not None:
            if reply.startswith("421"):
                _close_after_reply(server)
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        owner = self._owner
        if owner._disconnect.take():
            owner.dropped.append(_received(envelope))
            assert server.transport is not None
            server.transport.close()
            await asyncio.Event().wait()  # cancelled by connection_lost: no reply is ever written
        if owner._stall_data.take():
            await owner._release.wait()
        if owner._data_fault.take():
            if owner._data_fault.reply.startswith("421"):
                _close_after_reply(server)
            return owner._data_fault.reply
        owner.messages.append(_received(envelope))
        return f"250 2.0.0 Ok: queued as Q{next(owner._queue_ids)}"

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self._owner.rsets += 1
        return "250 2.0.0 Ok"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self._owner.quits += 1
        return "221 2.0.0 Bye"  # aiosmtpd then closes the connection


@asynccontextmanager
async def smtp_server() -> AsyncIterator[SmtpServer]:
    """A started server, stopped (every session cut) on exit."""
    server = SmtpServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def mail_server() -> AsyncIterator[SmtpServer]:
    """A started `SmtpServer` for one test."""
    async with smtp_server() as server:
        yield server

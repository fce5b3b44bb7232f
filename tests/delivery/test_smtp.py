"""SmtpMailer against a real (in-loop aiosmtpd) server: every outcome, pooling, pacing, the wire bytes."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable

import pytest

from service.delivery.mailer import Envelope
from service.delivery.smtp import SmtpMailer, SmtpOptions
from service.models import Outcome
from tests.delivery.smtpd import SmtpServer, mail_server, smtp_server

__all__ = ["mail_server"]  # the fixture, imported to be used here

SENDER = "news@example.org"
LIMIT = 5.0  # bound on every test's waits


def envelope(n: int = 0, recipient: str = "reader@example.net", body: bytes | None = None) -> Envelope:
    data = body if body is not None else f"Subject: Bulletin {n}\r\n\r\nBody {n}.\r\n".encode()
    return Envelope(SENDER, recipient, data, f"<m{n}@example.org>", key=f"m{n}")


MakeMailer = Callable[..., SmtpMailer]


@pytest.fixture
async def make_mailer(mail_server: SmtpServer) -> AsyncIterator[MakeMailer]:
    """SmtpMailer factory pointed at `mail_server`; every mailer is closed after the test."""
    made: list[SmtpMailer] = []

    def make(**options: object) -> SmtpMailer:
        settings: dict[str, object] = {"port": mail_server.port, "local_hostname": "client.test"}
        settings.update(options)
        mailer = SmtpMailer(SmtpOptions(**settings))  # type: ignore[arg-type]
        made.append(mailer)
        return mailer

    yield make
    for mailer in made:
        await mailer.close()


# ---- outcomes ------------------------------------------------------------------------------------


async def test_sent_with_the_server_reply_and_received_once(
    mail_server: SmtpServer, make_mailer: MakeMailer
) -> None:
    mailer = make_mailer()
    async with asyncio.timeout(LIMIT):
        result = await mailer.send(envelope(1))
    assert result.outcome is Outcome.SENT
    assert result.reply == "250 2.0.0 Ok: queued as Q1"
    [got] = mail_server.messages
    assert (got.mail_from, got.rcpt_tos, got.data) == (SENDER, ("reader@example.net",), envelope(1).data)
    assert "BODY=8BITMIME" not in got.mail_options  # 7-bit body: no BODY parameter needed
    assert f"SIZE={len(envelope(1).data)}" in got.mail_options


async def test_rcpt_5xx_is_permanent_and_the_next_message_follows_an_rset(
    mail_server: SmtpServer, make_mailer: MakeMailer
) -> None:
    mail_server.refuse("gone@example.net", "550 5.1.1 No such user")
    mailer = make_mailer()
    async with asyncio.timeout(LIMIT):
        refused = await mailer.send(envelope(1, "gone@example.net"))
        accepted = await mailer.send(envelope(2))
    assert refused.outcome is Outcome.PERMANENT
    assert refused.reply == "550 5.1.1 No such user"
    assert accepted.outcome is Outcome.SENT
    assert [m.rcpt_tos for m in mail_server.messages] == [("reader@example.net",)]
    assert mail_server.rsets == 1  # only after the half-open transaction
    assert mail_server.connections == 1


async def test_rcpt_4xx_is_temporary(mail_server: SmtpServer, make_mailer: MakeMailer) -> None:
    mail_server.refuse("busy@example.net", "451 4.3.0 Try later")
    async with asyncio.timeout(LIMIT):
        result = await make_mailer().send(envelope(1, "busy@example.net"))
    assert result.outcome is Outcome.TEMPORARY
    assert result.reply == "451 4.3.0 Try later"
    assert mail_server.messages == []


async def test_a_451_storm_is_temporary_then_delivery_resumes_on_the_same_connection(
    mail_server: SmtpServer, make_mailer: MakeMailer
) -> None:
    mail_server.fail_next(3, "451 4.3.0 Try later")
    mailer = make_mailer()
    async with asyncio.timeout(LIMIT):
        results = [await mailer.send(envelope(n)) for n in range(4)]
    assert [r.outcome for r in results] == [Outcome.TEMPORARY] * 3 + [Outcome.SENT]
    assert results[0].reply == "451 4.3.0 Try later"
    assert len(mail_server.messages) == 1
    assert mail_server.connections == 1
    assert mail_server.rsets == 0  # a refused MAIL opens no transaction


async def test_a_storm_until_cleared(mail_server: SmtpServer, make_mailer: MakeMailer) -> None:
    mail_server.fail_next(None, "452 4.3.1 Insufficient system storage")
    mailer = make_mailer()
    async with asyncio.timeout(LIMIT):
        before = [await mailer.send(envelope(n)) for n in range(5)]
        mail_server.clear()
        after = await mailer.send(envelope(9))
    assert {r.outcome for r in before} == {Outcome.TEMPORARY}
    assert after.outcome is Outcome.SENT
    assert [m.data for m in mail_server.messages] == [envelope(9).data]


async def test_421_is_temporary_and_the_connection_is_replaced(
    mail_server: SmtpServer, make_mailer: MakeMailer
) -> None:
    mail_server.fail_next(1, "421 4.3.2 System shutting down")
    mailer = make_mailer()
    async with asyncio.timeout(LIMIT):
        closing = await mailer.send(envelope(1))
        after = await mailer.send(envelope(2))
    assert closing.outcome is Outcome.TEMPORARY
    assert closing.reply == "421 4.3.2 System shutting down"
    assert after.outcome is Outcome.SENT
    assert mail_server.connections == 2
    assert len(mail_server.messages) == 1


async def test_421_at_rcpt_is_temporary(mail_server: SmtpServer, make_mailer: MakeMailer) -> None:
    mail_server.refuse("reader@example.net", "421 4.7.0 Too many connections")
    mailer = make_mailer()
    async with asyncio.timeout(LIMIT):
        result = await mailer.send(envelope(1))
        mail_server.clear()
        after = await mailer.send(envelope(2))
    assert (result.outcome, result.reply) == (Outcome.TEMPORARY, "421 4.7.0 Too many connections")
    assert after.outcome is Outcome.SENT
    assert mail_server.connections == 2


async def test_mail_from_5xx_is_temporary_and_logged(
    mail_server: SmtpServer, make_mailer: MakeMailer, caplog: pytest.LogCaptureFixture
) -> None:
    mail_server.fail_next(1, "553 5.7.1 Sender address rejected")
    with caplog.at_level(logging.ERROR, logger="service.delivery.smtp"):
        async with asyncio.timeout(LIMIT):
            result = await make_mailer().send(envelope(1))
    assert result.outcome is Outcome.TEMPORARY
    assert result.reply == "553 5.7.1 Sender address rejected"
    assert any("MAIL FROM" in r.getMessage() for r in caplog.records)
    assert mail_server.messages == []


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        ("554 5.6.0 Message content rejected", Outcome.PERMANENT),
        ("452 4.3.1 Out of memory", Outcome.TEMPORARY),
    ],
)
async def test_reply_at_the_end_of_data(
    mail_server: SmtpServer, make_mailer: MakeMailer, reply: str, outcome: Outcome
) -> None:
    mail_server.reject_data(1, reply)
    mailer = make_mailer()
    async with asyncio.timeout(LIMIT):
        result = await mailer.send(envelope(1))
        after = await mailer.send(envelope(2))
    assert (result.outcome, result.reply) == (outcome, reply)
    assert after.outcome is Outcome.SENT
    assert [m.data for m in mail_server.messages] == [envelope(2).data]
    assert (mail_server.connections, mail_server.rsets) == (1, 0)  # the final reply ends the transaction


async def test_disconnect_after_the_message_was_sent_is_unknown(
    mail_server: SmtpServer, make_mailer: MakeMailer
) -> None:
    mail_server.disconnect_after_data(1)
    mailer = make_mailer()
    async with asyncio.timeout(LIMIT):
        result = await mailer.send(envelope(1))
        after = await mailer.send(envelope(2))
    assert result.outcome is Outcome.UNKNOWN
    assert "may have accepted" in result.reply
    assert [m.data for m in mail_server.dropped] == [envelope(1).data]  # it did get there, once
    assert [m.data for m in mail_server.messages] == [envelope(2).data]
    assert after.outcome is Outcome.SENT
    assert mail_server.connections == 2


async def test_no_reply_to_rcpt_times_out_as_temporary(
    mail_server: SmtpServer, make_mailer: MakeMailer
) -> None:
    mail_server.stall_rcpt(1)
    mailer = make_mailer(timeout=0.5)
    async with asyncio.timeout(LIMIT):
        started = time.monotonic()
        result = await mailer.send(envelope(1))
        waited = time.monotonic() - started
        after = await mailer.send(envelope(2))
    assert result.outcome is Outcome.TEMPORARY
    assert result.reply == "RCPT TO: no reply within 0.5 s"
    assert waited >= 0.45
    assert after.outcome is Outcome.SENT
    assert [m.data for m in mail_server.messages] == [envelope(2).data]
    assert mail_server.connections == 2  # the timed-out session is not reused


async def test_no_reply_after_the_message_times_out_as_unknown(
    mail_server: SmtpServer, make_mailer: MakeMailer
) -> None:
    mail_server.stall_data(1)
    mailer = make_mailer(timeout=0.5)
    async with asyncio.timeout(LIMIT):
        result = await mailer.send(envelope(1))
        after = await mailer.send(envelope(2))
    assert result.outcome is Outcome.UNKNOWN
    assert result.reply.startswith("no reply within 0.5 s after the message was sent")
    assert after.outcome is Outcome.SENT
    assert [m.data for m in mail_server.messages] == [envelope(2).data]


async def test_server_down_is_temporary_then_the_same_mailer_recovers(
    mail_server: SmtpServer, make_mailer: MakeMailer
) -> None:
    mailer = make_mailer()
    async with asyncio.timeout(LIMIT):
        first = await mailer.send(envelope(1))
        await mail_server.stop()
        down = await mailer.send(envelope(2))
        await mail_server.start()
        back = await mailer.send(envelope(3))
    assert first.outcome is Outcome.SENT
    assert down.outcome is Outcome.TEMPORARY
    assert f"127.0.0.1:{mail_server.port}" in down.reply
    assert back.outcome is Outcome.SENT
    assert [m.data for m in mail_server.messages] == [envelope(1).data, envelope(3).data]


async def test_a_pooled_connection_the_server_closed_is_replaced_without_a_failure(
    mail_server: SmtpServer, make_mailer: MakeMailer
) -> None:
    mailer = make_mailer()
    async with asyncio.timeout(LIMIT):
        first = await mailer.send(envelope(1))
        mail_server.drop_sessions()  # the client has not seen the close yet when it sends MAIL FROM
        second = await mailer.send(envelope(2))
    assert (first.outcome, second.outcome) == (Outcome.SENT, Outcome.SENT)
    assert [m.data for m in mail_server.messages] == [envelope(1).data, envelope(2).data]
    assert mail_server.connections == 2


async def test_connection_refused_is_temporary() -> None:
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mailer = SmtpMailer(SmtpOptions(port=port, local_hostname="client.test", timeout=2))
    async with asyncio.timeout(LIMIT):
        result = await mailer.send(envelope(1))
        await mailer.close()
    assert result.outcome is Outcome.TEMPORARY
    assert "refused" in result.reply.lower() or "connect" in result.reply.lower()


@pytest.mark.parametrize(
    "options",
    [{"username": "user", "password": "secret"}, {"security": "starttls"}],
    ids=["auth-not-offered", "starttls-not-offered"],
)
async def test_session_setup_refused_is_temporary_and_logged(
    mail_server: SmtpServer,
    make_mailer: MakeMailer,
    caplog: pytest.LogCaptureFixture,
    options: dict[str, str],
) -> None:
    with caplog.at_level(logging.ERROR, logger="service.delivery.smtp"):
        async with asyncio.timeout(LIMIT):
            result = await make_mailer(**options).send(envelope(1))
    assert result.outcome is Outcome.TEMPORARY
    assert "not supported" in result.reply
    assert [r.getMessage() for r in caplog.records] == ["smtp session setup failed (TLS, EHLO or AUTH)"]
    assert mail_server.messages == []


async def test_addresses_that_would_inject_smtp_are_refused_before_sending(
    mail_server: SmtpServer, make_mailer: MakeMailer
) -> None:
    mailer = make_mailer()
    async with asyncio.timeout(LIMIT):
        bad_rcpt = await mailer.send(envelope(1, "a@example.net> NOTIFY=NEVER"))
        bad_sender = await mailer.send(
            Envelope("x@example.org>\r\nRSET", "reader@example.net", b"x\r\n", "<m@x>")
        )
    assert bad_rcpt.outcome is Outcome.PERMANENT
    assert bad_sender.outcome is Outcome.TEMPORARY
    assert mail_server.connections == 0


# ---- pool, concurrency, pacing -------------------------------------------------------------------


async def test_sequential_messages_reuse_one_connection(
    mail_server: SmtpServer, make_mailer: MakeMailer
) -> None:
    mailer = make_mailer(pool_size=4)
    async with asyncio.timeout(LIMIT):
        results = [await mailer.send(envelope(n)) for n in range(20)]
    assert {r.outcome for r in results} == {Outcome.SENT}
    assert len(mail_server.messages) == 20
    assert mail_server.connections == 1
    assert mail_server.rsets == 0


async def test_fifty_concurrent_sends_share_at_most_pool_size_connections(
    mail_server: SmtpServer, make_mailer: MakeMailer
) -> None:
    mailer = make_mailer(pool_size=4)
    async with asyncio.timeout(LIMIT):
        results = await asyncio.gather(*(mailer.send(envelope(n)) for n in range(50)))
    assert {r.outcome for r in results} == {Outcome.SENT}
    assert sorted(m.data for m in mail_server.messages) == sorted(envelope(n).data for n in range(50))
    assert mail_server.connections <= 4
    assert mail_server.max_active <= 4


async def test_rate_limit_paces_sends_across_the_pool(
    mail_server: SmtpServer, make_mailer: MakeMailer
) -> None:
    mailer = make_mailer(pool_size=4, rate_limit=20)
    async with asyncio.timeout(LIMIT):
        started = time.monotonic()
        results = await asyncio.gather(*(mailer.send(envelope(n)) for n in range(10)))
        elapsed = time.monotonic() - started
    assert {r.outcome for r in results} == {Outcome.SENT}
    assert elapsed >= 0.4  # 10 messages at 20/s: the tenth may start 9/20 s after the first


async def test_a_node_takes_its_share_of_a_cluster_wide_rate_limit(
    mail_server: SmtpServer, make_mailer: MakeMailer
) -> None:
    mailer = make_mailer(pool_size=4, rate_limit=40)
    mailer.share(1 / 4)  # four nodes share 40/s: 10/s each
    async with asyncio.timeout(LIMIT):
        started = time.monotonic()
        results = await asyncio.gather(*(mailer.send(envelope(n)) for n in range(6)))
        elapsed = time.monotonic() - started
    assert {r.outcome for r in results} == {Outcome.SENT}
    assert elapsed >= 0.45  # 6 messages at 10/s: the sixth starts 5/10 s after the first (40/s: 0.125)


# ---- the bytes on the wire -----------------------------------------------------------------------


async def test_eight_bit_body_and_leading_dots_arrive_byte_identical(
    mail_server: SmtpServer, make_mailer: MakeMailer
) -> None:
    body = (
        "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
        ".\r\n..\r\n.leading dot\r\nGrüße aus Köln — ünïcödé ✓\r\n.\r\n"
    ).encode()
    async with asyncio.timeout(LIMIT):
        result = await make_mailer().send(envelope(1, body=body))
    assert result.outcome is Outcome.SENT
    [got] = mail_server.messages
    assert got.data == body
    assert "BODY=8BITMIME" in got.mail_options


async def test_a_body_starting_with_a_dot_and_without_a_final_crlf(
    mail_server: SmtpServer, make_mailer: MakeMailer
) -> None:
    body = b".first line\r\nlast line without CRLF"
    async with asyncio.timeout(LIMIT):
        result = await make_mailer().send(envelope(1, body=body))
    assert result.outcome is Outcome.SENT
    assert mail_server.messages[0].data == body + b"\r\n"  # the transport ends the last line


async def test_bare_line_feeds_are_sent_as_crlf(mail_server: SmtpServer, make_mailer: MakeMailer) -> None:
    body = b"Subject: x\n\nline\n.dot\rcr\r\n"
    async with asyncio.timeout(LIMIT):
        result = await make_mailer().send(envelope(1, body=body))
    assert result.outcome is Outcome.SENT
    assert mail_server.messages[0].data == b"Subject: x\r\n\r\nline\r\n.dot\r\ncr\r\n"


async def test_non_ascii_addresses_use_smtputf8(mail_server: SmtpServer, make_mailer: MakeMailer) -> None:
    async with asyncio.timeout(LIMIT):
        result = await make_mailer().send(envelope(1, "jürgen@exämple.de"))
    assert result.outcome is Outcome.SENT
    [got] = mail_server.messages
    assert got.rcpt_tos == ("jürgen@exämple.de",)
    assert "SMTPUTF8" in got.mail_options


# ---- closing -------------------------------------------------------------------------------------


async def test_close_says_quit_on_every_connection_and_later_sends_are_temporary() -> None:
    async with smtp_server() as server:
        mailer = SmtpMailer(SmtpOptions(port=server.port, pool_size=3, local_hostname="client.test"))
        async with asyncio.timeout(LIMIT):
            await asyncio.gather(*(mailer.send(envelope(n)) for n in range(9)))
            opened = server.connections
            await mailer.close()
            await server.wait_idle()
            late = await mailer.send(envelope(10))
        assert 1 <= opened <= 3
        assert server.quits == opened
        assert server.active == 0
        assert late.outcome is Outcome.TEMPORARY
        assert len(server.messages) == 9


async def test_close_without_any_connection_is_a_no_op() -> None:
    mailer = SmtpMailer(SmtpOptions())
    async with asyncio.timeout(LIMIT):
        await mailer.close()
        await mailer.close()

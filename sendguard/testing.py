"""Helpers for testing code that sends through sendguard.

* :class:`FakeClock`: a clock and a sleep that only move when told, for retries and warmup days.
* :class:`ScriptedSMTPServer`: a real SMTP server (aiosmtpd) in the running event loop, scripted
  per recipient ("this one gets 550 5.1.1, that one 451 4.7.1 then 250") and recording every
  command and message it received.  Needs ``pip install 'sendguard[testing]'``.
* :class:`RecordingAdapter`: an adapter that sends nothing, records each envelope and answers
  with scripted replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from types import TracebackType
from typing import Any, Self

from sendguard._adapter import Adapter
from sendguard._errors import ConfigurationError
from sendguard._models import Envelope, Reply, Stage

__all__ = [
    "DROP",
    "AdapterConformance",
    "FakeClock",
    "Received",
    "RecordingAdapter",
    "ScriptedSMTPServer",
    "make_arf",
    "make_dsn",
]

DROP = "drop"
"""A scripted reply that closes the connection instead of answering."""


class FakeClock:
    """A UTC clock that stands still until advanced; its :meth:`sleep` advances it instantly."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = datetime(2026, 11, 1, 9, 0, tzinfo=UTC) if start is None else start
        if not isinstance(self.now, datetime) or self.now.utcoffset() is None:
            raise ConfigurationError(
                f"FakeClock needs a timezone-aware start, e.g. datetime(2026, 11, 1, "
                f"tzinfo=UTC), not {self.now!r}"
            )
        self.sleeps: list[float] = []

    def __call__(self) -> datetime:
        """The current fake time."""
        return self.now

    def advance(self, seconds: float = 0.0, **delta: float) -> None:
        """Move the clock forward by *seconds* (and/or ``days=``, ``hours=``, ...)."""
        self.now += timedelta(seconds=seconds, **delta)

    async def sleep(self, seconds: float) -> None:
        """Record the wait and advance the clock by it, without waiting."""
        self.sleeps.append(seconds)
        self.advance(seconds)


@dataclass
class Received:
    """One message a :class:`ScriptedSMTPServer` received in full."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    dropped: bool = False
    """True when the server was scripted to drop the connection instead of answering it."""

    @property
    def message(self) -> EmailMessage:
        """The received message, parsed (with line ends as Python writes them, LF)."""
        return email.message_from_bytes(
            self.data.replace(b"\r\n", b"\n"), policy=email.policy.default
        )


@dataclass
class _Script:
    replies: dict[str, list[str]] = field(default_factory=dict)
    data: list[str] = field(default_factory=list)

    def next_rcpt(self, address: str) -> str:
        queue = self.replies.get(address.lower())
        if not queue:
            return "250 2.1.5 OK"
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def next_data(self) -> str:
        return self.data.pop(0) if self.data else "250 2.0.0 OK: queued"


class ScriptedSMTPServer:
    """A real aiosmtpd server on 127.0.0.1, in the running loop, answering as scripted.

    Use as ``async with ScriptedSMTPServer() as server:``; ``server.port`` is its port.
    """

    def __init__(self, *, hostname: str = "127.0.0.1", smtputf8: bool = True) -> None:
        self.hostname = hostname
        self.port = 0
        self.smtputf8 = smtputf8
        self.received: list[Received] = []
        self.rcpt_log: list[str] = []
        """Every RCPT TO address the server was given, in order, whatever it answered."""
        self.connections = 0
        self._script = _Script()
        self._server: asyncio.Server | None = None
        self._sessions: list[Any] = []

    def script(self, address: str, *replies: str) -> None:
        """Answer RCPT TO *address* with *replies* in turn; the last one then repeats.

        A reply is a full SMTP reply line such as ``"550 5.1.1 no such user"``, or
        :data:`DROP` to close the connection without answering.
        """
        self._script.replies[address.lower()] = list(replies)

    def script_data(self, *replies: str) -> None:
        """Answer the next messages' final dot with *replies*, one each, then 250."""
        self._script.data.extend(replies)

    @property
    def accepted(self) -> list[str]:
        """Every recipient of every message received in full (dropped ones included)."""
        return [r for m in self.received for r in m.rcpt_tos]

    async def start(self) -> None:
        """Listen on a free port."""
        try:
            from aiosmtpd.smtp import SMTP  # noqa: PLC0415 (optional dependency)
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigurationError(
                "ScriptedSMTPServer needs aiosmtpd: pip install 'sendguard[testing]'"
            ) from exc
        loop = asyncio.get_running_loop()

        def protocol() -> Any:  # noqa: ANN401 (aiosmtpd is untyped)
            self.connections += 1
            session = SMTP(
                _Handler(self),
                hostname="sink.test",
                enable_SMTPUTF8=self.smtputf8,
                decode_data=False,
                loop=loop,
            )
            self._sessions.append(session)
            return session

        self._server = await loop.create_server(protocol, self.hostname, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        if self._server is not None:
            self._server.close()
            for session in self._sessions:
                if session.transport is not None:
                    session.transport.abort()
            await self._server.wait_closed()
            self._server = None

    @contextlib.contextmanager
    def in_thread(self) -> Iterator[Self]:
        """Run the server on an event loop of its own thread, for code that is not async.

        ``with ScriptedSMTPServer().in_thread() as server: ...`` (Django, Flask, SyncGuard).
        """
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="smtp-server", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(10)
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def _drop(server: Any) -> str:  # noqa: ANN401 (aiosmtpd is untyped)
    server.transport.abort()
    # aiosmtpd cancels the session's task once the connection is lost: nothing is answered.
    await asyncio.Event().wait()
    return "421 unreachable"  # pragma: no cover


class _Handler:
    def __init__(self, owner: ScriptedSMTPServer) -> None:
        self._owner = owner

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self,
        server: Any,  # noqa: ANN401
        session: Any,  # noqa: ANN401
        envelope: Any,  # noqa: ANN401
        address: str,
        rcpt_options: list[str],
    ) -> str:
        self._owner.rcpt_log.append(address)
        reply = self._owner._script.next_rcpt(address)
        if reply == DROP:
            return await _drop(server)
        if reply.startswith("2"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self,
        server: Any,  # noqa: ANN401
        session: Any,  # noqa: ANN401
        envelope: Any,  # noqa: ANN401
    ) -> str:
        reply = self._owner._script.next_data()
        content = bytes(envelope.original_content or b"")
        if reply == DROP or reply.startswith("2"):
            self._owner.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), content, reply == DROP)
            )
        if reply == DROP:
            return await _drop(server)
        return reply


class RecordingAdapter(Adapter):
    """Sends nothing: records each envelope and answers 250, or as scripted per recipient."""

    def __init__(self, replies: Mapping[str, Sequence[Reply]] | None = None) -> None:
        self.envelopes: list[Envelope] = []
        self._replies = {k.lower(): list(v) for k, v in (replies or {}).items()}

    async def deliver(self, envelope: Envelope) -> Mapping[str, Reply]:
        """Record *envelope*; answer each recipient with its next scripted reply, else 250."""
        self.envelopes.append(envelope)
        answers = {}
        for rcpt in envelope.recipients:
            queue = self._replies.get(rcpt.lower())
            if queue:
                answers[rcpt] = queue.pop(0) if len(queue) > 1 else queue[0]
            else:
                answers[rcpt] = Reply(250, "2.0.0 OK", Stage.DATA_END, "2.0.0")
        return answers


def _headers_of(original: bytes) -> bytes:
    head, _, _ = original.replace(b"\r\n", b"\n").partition(b"\n\n")
    return head + b"\n"


def make_dsn(
    original: bytes,
    recipients: Mapping[str, str],
    *,
    action: str = "failed",
    reporting_mta: str = "mx.bounces.example",
    remote_mta: str = "mx.recipient.example",
) -> bytes:
    """An RFC 3464 bounce of *original* as Postfix writes it: one group per recipient.

    *recipients* maps each address to its SMTP reply (``"550 5.1.1 User unknown"``); the
    original's headers are returned as ``text/rfc822-headers``.
    """
    boundary = "sendguard-dsn-boundary"
    notice = "\n".join(
        f"<{rcpt}>: host {remote_mta} said: {reply}" for rcpt, reply in recipients.items()
    )
    groups = []
    for rcpt, reply in recipients.items():
        status = next((w for w in reply.split() if w[:1] in "245" and w.count(".") == 2), "5.0.0")
        groups.append(
            f"Final-Recipient: rfc822; {rcpt}\nOriginal-Recipient: rfc822;{rcpt}\n"
            f"Action: {action}\nStatus: {status}\nRemote-MTA: dns; {remote_mta}\n"
            f"Diagnostic-Code: smtp; {reply}\n"
        )
    head = (
        f"From: MAILER-DAEMON@{reporting_mta} (Mail Delivery System)\n"
        "To: news@sender.example\nSubject: Undelivered Mail Returned to Sender\n"
        "Auto-Submitted: auto-replied\nMIME-Version: 1.0\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\n\n'
        f"--{boundary}\nContent-Type: text/plain\n\n"
        f"I'm sorry to have to inform you that your message could not be delivered.\n\n"
        f"{notice}\n\n--{boundary}\nContent-Type: message/delivery-status\n\n"
        f"Reporting-MTA: dns; {reporting_mta}\n\n" + "\n".join(groups) + "\n"
        f"--{boundary}\nContent-Type: text/rfc822-headers\n\n"
    )
    tail = f"\n--{boundary}--\n"
    return head.encode() + _headers_of(original) + tail.encode()


def make_arf(
    original: bytes, recipient: str, *, feedback_type: str = "abuse", reporter: str = "fbl.example"
) -> bytes:
    """An RFC 5965 complaint about *original* by *recipient*, with the original attached."""
    boundary = "sendguard-arf-boundary"
    head = (
        f"From: feedback@{reporter}\nTo: abuse@sender.example\nSubject: complaint\n"
        "MIME-Version: 1.0\n"
        f'Content-Type: multipart/report; report-type=feedback-report; boundary="{boundary}"\n\n'
        f"--{boundary}\nContent-Type: text/plain\n\nThis is an abuse report.\n\n"
        f"--{boundary}\nContent-Type: message/feedback-report\n\n"
        f"Feedback-Type: {feedback_type}\nUser-Agent: {reporter}/1.0\nVersion: 1\n"
        f"Original-Rcpt-To: {recipient}\nReporting-MTA: dns; {reporter}\n\n"
        f"--{boundary}\nContent-Type: message/rfc822\n\n"
    )
    body = original.replace(b"\r\n", b"\n")
    return head.encode() + body + f"\n--{boundary}--\n".encode()


class AdapterConformance:
    """The behaviour every ESP adapter owes the guard; subclass it in the adapter's tests.

    Implement :meth:`make_adapter` (an adapter talking to your emulated provider, which
    accepts, throttles or refuses the message as asked), :meth:`webhook` (a genuine or a
    forged request reporting a hard bounce of ``bounced@example.com``) and
    :meth:`parse_webhook`; the ``test_conformance_*`` methods come with the class.
    """

    RECIPIENTS = ("a@example.com", "b@example.com")

    def make_adapter(self, behaviour: str) -> Adapter:
        """An adapter whose provider will ``"accept"``, ``"throttle"`` or ``"refuse"``."""
        raise NotImplementedError

    def webhook(self, *, genuine: bool) -> tuple[Mapping[str, str], bytes]:
        """Headers and body of a webhook request reporting a hard bounce."""
        raise NotImplementedError

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[Any]:
        """The adapter's webhook parser with the test's secrets bound."""
        raise NotImplementedError

    def _envelope(self) -> Envelope:
        message = EmailMessage()
        message["From"] = "news@sender.example"
        message["To"] = ", ".join(self.RECIPIENTS)
        message["Subject"] = "Conformance"
        message.set_content("Hello.\n")
        return Envelope("news@sender.example", self.RECIPIENTS, message, message.as_bytes())

    async def _replies(self, behaviour: str) -> Mapping[str, Reply]:
        adapter = self.make_adapter(behaviour)
        try:
            replies = await adapter.deliver(self._envelope())
        finally:
            await adapter.aclose()
        assert set(replies) == set(self.RECIPIENTS), "a reply for every recipient"
        return replies

    async def test_conformance_an_accepted_send_is_2xx_for_everyone(self) -> None:
        """Accepted: every recipient gets a 2xx."""
        replies = await self._replies("accept")
        assert all(r.code is not None and 200 <= r.code < 300 for r in replies.values())

    async def test_conformance_throttling_is_temporary_and_never_dead(self) -> None:
        """Throttled (429/5xx): no code or a 4xx, and never a recipient fault."""
        from sendguard._bounces.classify import HARD_REASONS  # noqa: PLC0415

        for reply in (await self._replies("throttle")).values():
            assert reply.code is None or 400 <= reply.code < 500, reply
            assert reply.reason not in HARD_REASONS, reply

    async def test_conformance_a_refused_message_suppresses_nobody(self) -> None:
        """A refused request fails the message; no recipient is suppressed for it."""
        from sendguard._bounces.classify import DEFAULT  # noqa: PLC0415
        from sendguard._bounces.verdict import Decision, judge_reply  # noqa: PLC0415

        for reply in (await self._replies("refuse")).values():
            assert reply.code is not None and reply.code >= 500, reply
            assert judge_reply(reply, DEFAULT)[0] is not Decision.SUPPRESS, reply

    def test_conformance_a_genuine_webhook_reports_the_hard_bounce(self) -> None:
        """A genuine request is read: the hard bounce is there."""
        headers, body = self.webhook(genuine=True)
        events = self.parse_webhook(headers, body)
        hard = [e for e in events if e.recipient == "bounced@example.com"]
        assert hard and all(e.hard and e.type == "bounced" for e in hard)

    def test_conformance_a_forged_webhook_is_refused(self) -> None:
        """A forged request raises WebhookAuthError."""
        from sendguard._errors import WebhookAuthError  # noqa: PLC0415

        headers, body = self.webhook(genuine=False)
        try:
            self.parse_webhook(headers, body)
        except WebhookAuthError:
            return
        raise AssertionError("a forged webhook was accepted")

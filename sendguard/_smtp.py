"""Delivery over SMTP with aiosmtplib: a small pool of connections, every reply kept."""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Mapping

import aiosmtplib

from sendguard._adapter import Adapter
from sendguard._errors import ConfigurationError
from sendguard._loops import abandon
from sendguard._models import Envelope, Reply, Stage
from sendguard._options import check_flag, check_instance, check_integer, check_seconds, check_text

__all__ = ["SMTPAdapter"]

_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)
_NETWORK_ERRORS = (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError)
# Everything a transaction can raise once a connection is open: the network failing, and a
# reply aiosmtplib cannot read (a malformed or overlong line), after which the connection is
# in an unknown state and is dropped like a broken one.
_TRANSACTION_ERRORS = (aiosmtplib.SMTPException, OSError)


class _StaleConnectionError(Exception):
    """A pooled connection the server had already closed; retry on a fresh one."""


_OWNER = "SMTPAdapter"
# What aiosmtplib puts after EHLO/HELO: a domain of letter-digit-hyphen labels (RFC 5321
# section 4.1.2), or an address literal in brackets.  aiosmtplib refuses only white space and
# control characters, and only at the first send; a name is refused here, at construction.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EHLO_NAME = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*\.?|\[(?:IPv6:)?[0-9A-Fa-f.:]+\])\Z")
# A host to connect to: a name (internationalized names too), an IPv4 or IPv6 address.
_HOST = re.compile(r"[\w.:%-]+\Z")


def _check_options(
    *,
    hostname: object,
    port: object,
    username: object,
    password: object,
    use_tls: object,
    start_tls: object,
    validate_certs: object,
    tls_context: object,
    timeout: object,
    data_timeout: object,
    local_hostname: object,
    pool_size: object,
    confirms_delivery: object,
) -> None:
    """Every option aiosmtplib (or the wire) would refuse later, refused now."""
    host = check_text(_OWNER, "hostname", hostname)
    if not _HOST.match(host):
        raise ConfigurationError(
            f"SMTPAdapter(hostname=...) must be a host name or an IP address, not {host!r}"
        )
    if port is not None:
        check_integer(_OWNER, "port", port, minimum=1, maximum=65535)
    if username is not None:
        check_text(_OWNER, "username", username)
    if password is not None:
        check_text(_OWNER, "password", password, secret=True)
    check_flag(_OWNER, "use_tls", use_tls)
    if start_tls is not None:
        check_flag(_OWNER, "start_tls", start_tls)
    check_flag(_OWNER, "validate_certs", validate_certs)
    check_flag(_OWNER, "confirms_delivery", confirms_delivery)
    if tls_context is not None:
        check_instance(_OWNER, "tls_context", tls_context, ssl.SSLContext, "an ssl.SSLContext")
    check_seconds(_OWNER, "timeout", timeout)
    check_seconds(_OWNER, "data_timeout", data_timeout)
    if local_hostname is not None:
        name = check_text(_OWNER, "local_hostname", local_hostname)
        if len(name) > 255 or not _EHLO_NAME.match(name):
            raise ConfigurationError(
                "SMTPAdapter(local_hostname=...) must be a host name (letters, digits, hyphens "
                f"and dots, e.g. 'mail.example.com') or an address literal such as "
                f"'[192.0.2.1]', without spaces, not {name!r}"
            )
    check_integer(_OWNER, "pool_size", pool_size, minimum=1)


class SMTPAdapter(Adapter):
    """Delivers through one SMTP server, keeping up to ``pool_size`` connections open.

    Each delivery is one transaction (MAIL, one RCPT per recipient, DATA) on a connection of
    its own, and every RCPT reply is reported.  ``timeout`` bounds each command; the reply to
    the final dot may take far longer (RFC 5321 section 4.5.3.2 suggests 10 minutes), which
    ``data_timeout`` bounds.  Set ``confirms_delivery`` when the server is the recipients' own
    MX (not a relay): its 250 then proves delivery and resets soft-bounce counts.
    """

    def __init__(
        self,
        hostname: str = "localhost",
        port: int | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool = False,
        start_tls: bool | None = None,
        validate_certs: bool = True,
        tls_context: ssl.SSLContext | None = None,
        timeout: float = 60.0,
        data_timeout: float = 600.0,
        local_hostname: str | None = None,
        pool_size: int = 4,
        confirms_delivery: bool = False,
    ) -> None:
        _check_options(
            hostname=hostname,
            port=port,
            username=username,
            password=password,
            use_tls=use_tls,
            start_tls=start_tls,
            validate_certs=validate_certs,
            tls_context=tls_context,
            timeout=timeout,
            data_timeout=data_timeout,
            local_hostname=local_hostname,
            pool_size=pool_size,
            confirms_delivery=confirms_delivery,
        )
        if use_tls and start_tls:
            raise ConfigurationError(
                "use_tls=True (implicit TLS, port 465) and start_tls=True (STARTTLS, port 587) "
                "exclude each other: choose one"
            )
        if (username is None) != (password is None):
            raise ConfigurationError("give both username and password, or neither")
        if port is None:
            port = 465 if use_tls else 587 if start_tls else 25
        self.hostname = hostname
        self.port = port
        self.confirms_delivery = confirms_delivery
        self._options = {
            "hostname": hostname,
            "port": port,
            "username": username,
            "password": password,
            "use_tls": use_tls,
            "start_tls": start_tls,
            "validate_certs": validate_certs,
            "tls_context": tls_context,
            "timeout": timeout,
            "local_hostname": local_hostname,
        }
        self._data_timeout = data_timeout
        self._pool_size = pool_size
        self._slots = asyncio.Semaphore(pool_size)
        self._idle: list[aiosmtplib.SMTP] = []
        self._closed = False

    def __repr__(self) -> str:
        return f"SMTPAdapter(hostname={self.hostname!r}, port={self.port})"

    async def deliver(self, envelope: Envelope) -> Mapping[str, Reply]:
        """See :meth:`Adapter.deliver`."""
        async with self._slots:
            while self._idle:
                smtp = self._idle.pop()
                if not smtp.is_connected:
                    continue
                try:
                    return await self._transaction(smtp, envelope, reused=True)
                except _StaleConnectionError:
                    smtp.close()
            smtp = aiosmtplib.SMTP(**self._options)  # type: ignore[arg-type]
            try:
                await smtp.connect()
                await _greet(smtp)
            except aiosmtplib.SMTPResponseException as exc:
                smtp.close()
                return _everyone(envelope, _refusal(exc, Stage.CONNECT))
            except (aiosmtplib.SMTPException, OSError) as exc:
                smtp.close()
                return _everyone(envelope, Reply(None, _describe(exc), Stage.CONNECT))
            return await self._transaction(smtp, envelope, reused=False)

    async def _transaction(  # noqa: PLR0911 (one exit per way a transaction can end)
        self, smtp: aiosmtplib.SMTP, envelope: Envelope, *, reused: bool
    ) -> Mapping[str, Reply]:
        replies: dict[str, Reply] = {}
        accepted: list[str] = []
        stage = Stage.MAIL
        try:
            encoding = "utf-8" if envelope.smtputf8 else "ascii"
            options = self._mail_options(smtp, envelope)
            if envelope.smtputf8 and "SMTPUTF8" not in options:
                return _everyone(
                    envelope,
                    Reply(553, "5.6.7 server does not support SMTPUTF8", Stage.MAIL, "5.6.7"),
                )
            response = await smtp.execute_command(
                b"MAIL",
                b"FROM:<" + envelope.sender.encode(encoding) + b">",
                *(o.encode("ascii") for o in options),
            )
            if response.code == 421 and reused:
                # The server timed out this idle connection ("421 4.4.2 idle too long").
                raise _StaleConnectionError(response.message)  # noqa: TRY301 (handled by deliver)
            if response.code != 250:
                await self._reset(smtp)
                self._keep(smtp)
                return _everyone(envelope, Reply.from_smtp(*response, Stage.MAIL))

            stage = Stage.RCPT
            for rcpt in envelope.recipients:
                response = await smtp.execute_command(
                    b"RCPT", b"TO:<" + rcpt.encode(encoding) + b">"
                )
                replies[rcpt] = Reply.from_smtp(*response, Stage.RCPT)
                if response.code in (250, 251):
                    accepted.append(rcpt)
            if not accepted:
                await self._reset(smtp)
                self._keep(smtp)
                return replies

            stage = Stage.DATA
            response = await smtp.execute_command(b"DATA")
            if response.code != 354:
                await self._reset(smtp)
                self._keep(smtp)
                return _update(replies, accepted, Reply.from_smtp(*response, Stage.DATA))
            if smtp.protocol is None:
                raise aiosmtplib.SMTPServerDisconnected("connection lost after DATA")  # noqa: TRY301
            smtp.protocol.write(_LEADING_DOT.sub(b"..", _crlf_terminated(envelope.data)) + b".\r\n")
            stage = Stage.DATA_END
            response = await smtp.protocol.read_response(timeout=self._data_timeout)
            _update(replies, accepted, Reply.from_smtp(*response, Stage.DATA_END))
        except _TRANSACTION_ERRORS as exc:
            smtp.close()
            if reused and stage is Stage.MAIL:
                raise _StaleConnectionError from exc
            if stage is Stage.DATA_END:
                detail = (
                    f"delivery uncertain: no reply after the message was sent ({_describe(exc)})"
                )
                return _update(replies, accepted, Reply(None, detail, stage))
            # The message was not complete, so nobody got it: every recipient not refused
            # at RCPT (those accepted there included) is retried.
            unsent = [r for r in envelope.recipients if r not in replies or r in accepted]
            return _update(replies, unsent, Reply(None, _describe(exc), stage))
        except BaseException:
            smtp.close()
            raise
        self._keep(smtp)
        return replies

    def _keep(self, smtp: aiosmtplib.SMTP) -> None:
        """Pool a connection that is still usable; close it otherwise (or once closed)."""
        if smtp.is_connected and not self._closed:
            self._idle.append(smtp)
        else:
            smtp.close()

    @staticmethod
    def _mail_options(smtp: aiosmtplib.SMTP, envelope: Envelope) -> list[str]:
        options = []
        if envelope.smtputf8 and smtp.supports_extension("smtputf8"):
            options.append("SMTPUTF8")
        if not envelope.data.isascii() and smtp.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        if smtp.supports_extension("size"):
            options.append(f"SIZE={len(envelope.data)}")
        return options

    @staticmethod
    async def _reset(smtp: aiosmtplib.SMTP) -> None:
        # Leave the connection clean for the next transaction, or drop it.
        try:
            response = await smtp.execute_command(b"RSET")
        except _TRANSACTION_ERRORS:
            smtp.close()
            raise
        if response.code != 250:
            smtp.close()

    def on_new_loop(self) -> None:
        """See :meth:`Adapter.on_new_loop`: idle connections of the old loop are dropped."""
        idle, self._idle = self._idle, []
        for smtp in idle:
            abandon(smtp.transport)
        self._slots = asyncio.Semaphore(self._pool_size)

    async def aclose(self) -> None:
        """Say QUIT on every idle connection."""
        self._closed = True
        idle, self._idle = self._idle, []
        for smtp in idle:
            try:
                await smtp.quit()
            except (aiosmtplib.SMTPException, OSError):
                smtp.close()


async def _greet(smtp: aiosmtplib.SMTP) -> None:
    """EHLO (HELO if refused) unless connect() already did: it does not without STARTTLS."""
    if not smtp.is_ehlo_or_helo_needed:
        return
    try:
        await smtp.ehlo()
    except aiosmtplib.SMTPHeloError:
        await smtp.helo()


def _crlf_terminated(data: bytes) -> bytes:
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def _everyone(envelope: Envelope, reply: Reply) -> dict[str, Reply]:
    return dict.fromkeys(envelope.recipients, reply)


def _update(replies: dict[str, Reply], recipients: list[str], reply: Reply) -> dict[str, Reply]:
    for rcpt in recipients:
        replies[rcpt] = reply
    return replies


def _refusal(exc: aiosmtplib.SMTPResponseException, stage: Stage) -> Reply:
    """The server's reply an exception carries; none when aiosmtplib could not read one."""
    if 200 <= exc.code < 600:
        return Reply.from_smtp(exc.code, exc.message, stage)
    return Reply(None, _describe(exc), stage)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

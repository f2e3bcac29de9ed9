"""Reading a message: envelope addresses, header checks, and the bytes that go on the wire."""

from __future__ import annotations

import base64
import binascii
import copy
import email.errors
import email.generator
import email.header
import email.policy
import email.utils
import io
import re
from email.message import EmailMessage, Message
from typing import Any, cast

from sendguard._address import has_line_break
from sendguard._errors import HeaderInjectionError, MessageEncodingError, MessageError

__all__ = [
    "check_headers",
    "envelope_recipients",
    "envelope_sender",
    "serialize",
]

_FOLD = re.compile(r"\r?\n(?=[ \t])")
_HEADER_NAME = re.compile(r"^[\x21-\x39\x3b-\x7e]+$")
_SURROGATES = re.compile("[\udc80-\udcff]")
# charset (with an optional *language), B or Q, the encoded text: each part runs to the next "?"
# or space, so the pattern is linear in the value.
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
# The headers whose MIME parameters (filename, name, boundary, charset) a receiver decodes.
_PARAMETERIZED = frozenset({"content-type", "content-disposition"})


def _raw_headers(part: Message) -> list[tuple[str, str]]:
    # EmailMessage.items() would hand back already-decoded header objects; the raw values are
    # what goes on the wire, so check those, and their decoded form separately below.
    raw_items = getattr(part, "raw_items", None)
    if raw_items is not None:
        return [(name, str(value)) for name, value in raw_items()]
    return [(name, str(value)) for name, value in part.items()]


def _word_bytes(encoding: str, text: str) -> bytes:
    data = text.encode("ascii", "surrogateescape")
    if encoding in "bB":
        data = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
        return binascii.a2b_base64(data + b"=" * (-len(data) % 4))
    return binascii.a2b_qp(data, header=True)


def _decode_bytes(charset: str, data: bytes) -> list[str]:
    try:
        return [data.decode(charset, "replace")]
    except LookupError:
        # A charset Python does not know may be known to the receiver: read its bytes as
        # ASCII-compatible (the line breaks below 0x80 are the same bytes in nearly every
        # charset) and as UTF-8.
        return [
            data.decode("latin-1").encode("ascii", "replace").decode(),
            data.decode("utf-8", "replace"),
        ]


def _decoded(value: str) -> list[str]:
    """The text of the RFC 2047 encoded words in *value*, as decoders read them.

    Each word alone, and each run of adjacent words in one charset with their bytes joined
    (decoders join them, so one character may be split across two words).  The charset may
    carry an RFC 2231 language (``utf-8*en``); decoders ignore it, and so does this.
    """
    texts: list[str] = []
    run: list[bytes] = []
    run_charset = ""
    end = -1
    for word in _ENCODED_WORD.finditer(value):
        charset = word.group(1).partition("*")[0].lower()
        try:
            data = _word_bytes(word.group(2), word.group(3))
        except (binascii.Error, ValueError):
            continue
        texts.extend(_decode_bytes(charset, data))
        adjacent = value[end : word.start()].strip(" \t\r\n") == "" and charset == run_charset
        if run and not adjacent:
            texts.extend(_decode_bytes(run_charset, b"".join(run)))
            run = []
        run.append(data)
        run_charset, end = charset, word.end()
    if len(run) > 1:
        texts.extend(_decode_bytes(run_charset, b"".join(run)))
    return texts


def _readings(value: str) -> list[tuple[str, str]]:
    """*value* as the programs that handle it may read it, each with how it was read.

    As written; its 8-bit bytes (a parsed message keeps them as surrogate escapes) as UTF-8,
    which they are on the wire under SMTPUTF8; and with RFC 2047 encoded words decoded, in
    whatever charset they declare.
    """
    found = [(value, "")]
    if _SURROGATES.search(value):
        raw = value.encode("ascii", "surrogateescape")
        found.append((raw.decode("utf-8", "replace"), " in its 8-bit bytes"))
    if "=?" in value:
        found.extend((text, " inside an RFC 2047 encoded word") for text in _decoded(value))
    return found


def _parameters(part: Message, header: str) -> list[tuple[str, str]]:
    """The decoded MIME parameters of *header* (RFC 2231 values collapsed), or none."""
    try:
        params = part.get_params(header=header) or []
        return [(key, email.utils.collapse_rfc2231_value(value)) for key, value in params]
    except (LookupError, UnicodeError, ValueError, IndexError):
        return []  # unparsable parameters are sent as the raw text they are; that was checked


def _refuse_line_breaks(name: str, value: str, what: str) -> None:
    for reading, how in _readings(value):
        if has_line_break(reading):
            raise HeaderInjectionError(f"{what} contains a line break or NUL{how}", header=name)


def check_headers(message: Message) -> None:
    """Refuse any header, in any MIME part, whose name or value carries a line break or NUL.

    A line break is anything ``str.splitlines()`` breaks at (:data:`sendguard.LINE_BREAKS`):
    the generator folds header values with it, so a vertical tab or U+2028 would become a CRLF
    on the wire.  Folding (CRLF followed by a space or tab, as in a parsed message) is allowed.
    Values are checked as written, as UTF-8 where they hold 8-bit bytes, and after decoding
    RFC 2047 encoded words, since a receiving program may decode and re-emit them; so are the
    MIME parameters (an attachment's filename) after RFC 2231 decoding.
    """
    for part in message.walk():
        extended = []
        for name, value in _raw_headers(part):
            if not _HEADER_NAME.match(name):
                raise HeaderInjectionError(f"header name {name!r} is not allowed", header=name)
            _refuse_line_breaks(name, _FOLD.sub("", value), f"header {name!r}")
            if "*" in value and name.lower() in _PARAMETERIZED:
                extended.append(name)  # RFC 2231 parameters: checked again once decoded
        for name in extended:
            for key, value in _parameters(part, name):
                _refuse_line_breaks(name, key, f"a parameter name of {name!r}")
                _refuse_line_breaks(name, value, f"parameter {key!r} of {name!r}")


def _addresses(message: Message, *names: str) -> list[str]:
    found: list[str] = []
    for name in names:
        for value in message.get_all(name) or ():
            parsed = getattr(value, "addresses", None)
            if parsed is not None:
                # An EmailMessage header already parsed its addresses (groups flattened).
                found.extend(a.addr_spec for a in parsed if a.addr_spec)
            else:
                found.extend(addr for _, addr in email.utils.getaddresses([str(value)]) if addr)
    return found


def envelope_recipients(message: Message) -> list[str]:
    """To, Cc and Bcc addresses of *message*, in that order, as written."""
    return _addresses(message, "To", "Cc", "Bcc")


def envelope_sender(message: Message) -> str:
    """The envelope sender implied by *message*: its Sender, else its first From address."""
    for name in ("Sender", "From"):
        found = _addresses(message, name)
        if found:
            return found[0]
    raise MessageError("the message has no From or Sender header and no sender= was given")


class _WirePolicy(email.policy.EmailPolicy):
    """The SMTP policy, also for what a compat32 message leaves unencoded in its headers.

    Under compat32 a value set as ``msg["Subject"] = "Grüße"`` stays raw text, and the stdlib
    generator would write it raw (or fail to); here it is encoded as RFC 2047 says, by the
    header class of its name (an address header encodes only the display names).  A
    :class:`email.header.Header` value is encoded as it encodes itself.
    """

    def fold_binary(self, name: str, value: Any) -> bytes:  # noqa: ANN401 (str, header or Header)
        """The header as bytes on the wire."""
        if isinstance(value, email.header.Header):
            value = value.encode(linesep=self.linesep)
        elif type(value) is str and not self.utf8 and not value.isascii():
            # A plain str (a header object is a str subclass, already parsed and encodable).
            header = self.header_factory(name, _FOLD.sub("", value))
            if any(isinstance(d, _UNPARSED) for d in header.defects):
                # A structured header (Date, Message-ID) it could not parse would fold to
                # nothing, or to something else: refuse rather than send another value.
                raise MessageEncodingError(
                    f"header {name!r} holds non-ASCII text that cannot be encoded for it"
                )
            value = header
        folded: bytes = super().fold_binary(name, value)
        return folded


_UNPARSED = (
    email.errors.InvalidHeaderDefect,
    email.errors.HeaderMissingRequiredValue,
    email.errors.InvalidDateDefect,
)
_SEVEN_BIT = _WirePolicy(linesep="\r\n", cte_type="7bit")
_UTF8 = _WirePolicy(linesep="\r\n", utf8=True)
_UNENCODED = ("", "7bit", "8bit", "binary")


def _repair(part: Message) -> None:
    """Encode a leaf part's payload that the generator would write raw, as base64.

    Text that was never encoded (a compat32 ``set_payload(str)`` without charset) is encoded
    in its declared charset, else UTF-8.  For a 7-bit transaction, 8-bit bytes (a parsed
    message's "8bit" parts) are sent as base64.  Done here rather than by the stdlib's charset
    registry, which other libraries change globally (Flask-Mail makes UTF-8 bodies 8-bit).
    """
    payload: str = part._payload  # type: ignore[attr-defined]  # the raw payload, as generated
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if _SURROGATES.search(payload):
        if cte not in _UNENCODED:
            raise MessageEncodingError(
                f"a {part.get_content_type()} part declared {cte} holds 8-bit bytes"
            )
        data = payload.encode("ascii", "surrogateescape")
        charset = None
    else:
        charset = part.get_content_charset() or "utf-8"
        data = payload.encode(charset)  # UnicodeEncodeError, LookupError: refused by the caller
    del part["Content-Transfer-Encoding"]
    part.set_payload(base64.encodebytes(data).decode("ascii"))
    part["Content-Transfer-Encoding"] = "base64"
    if charset is not None:
        part.set_param("charset", charset)


def _needs_repair(part: Message, *, seven_bit: bool) -> bool:
    payload = getattr(part, "_payload", None)
    if part.is_multipart() or not isinstance(payload, str) or payload.isascii():
        return False
    return seven_bit or not _SURROGATES.search(payload)


def _outgoing(message: Message, *, seven_bit: bool) -> Message:
    """*message* as it is to be flattened: Bcc removed, raw payloads encoded; never modified."""
    if any(_needs_repair(part, seven_bit=seven_bit) for part in message.walk()):
        outgoing = copy.deepcopy(message)
        for part in outgoing.walk():
            if _needs_repair(part, seven_bit=seven_bit):
                _repair(part)
    elif "Bcc" in message:
        # A shallow copy is enough: deleting a header rebinds the copy's header list.
        outgoing = copy.copy(message)
    else:
        return message
    del outgoing["Bcc"]
    return outgoing


def serialize(
    message: Message,
    *,
    message_id: str | None,
    utf8: bool = False,
) -> bytes:
    """The message as transmitted: Bcc removed, CRLF line ends, Message-ID added if given.

    Without *utf8* the result is 7-bit (ASCII): non-ASCII header text becomes RFC 2047
    encoded words (also in a compat32 message, where the stdlib would send it raw or fail),
    8-bit bodies become base64 or quoted-printable, so it may go to a server without 8BITMIME.
    With *utf8* (the transaction uses SMTPUTF8, which implies 8BITMIME, RFC 6531) header text
    is UTF-8 (RFC 6532) and 8-bit bodies go as they are.

    Raises :class:`MessageEncodingError` for a message that cannot be encoded so.
    """
    try:
        outgoing = _outgoing(message, seven_bit=not utf8)
        # BytesGenerator rather than as_bytes(): subclasses (Django's SafeMIMEText) override
        # as_bytes without the policy argument.
        buffer = io.BytesIO()
        generator = email.generator.BytesGenerator(
            buffer, mangle_from_=False, policy=_UTF8 if utf8 else _SEVEN_BIT
        )
        generator.flatten(cast("EmailMessage", outgoing))  # any Message flattens (typeshed)
    except MessageEncodingError:
        raise
    except (LookupError, UnicodeError, TypeError, ValueError, email.errors.MessageError) as exc:
        raise MessageEncodingError(f"the message cannot be encoded for the wire: {exc}") from exc
    data = buffer.getvalue()
    if not utf8 and not data.isascii():
        raise MessageEncodingError("the message has 8-bit data that could not be made 7-bit")
    if message_id is not None:
        data = f"Message-ID: {message_id}\r\n".encode("ascii") + data
    return data

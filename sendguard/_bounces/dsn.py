"""Reading bounces that arrive after the send: DSNs, MTA notices, complaints, auto-replies.

:func:`parse_bounce` turns one e-mail into one :class:`BounceReport` per recipient it is about.
It reads, in this order:

1. ARF complaint reports (RFC 5965, ``message/feedback-report``) and the complaint formats
   that predate it (Microsoft JMRP, Apple's unsubscribe mail): ``complaint``, reason
   ``feedback``;
2. delivery status notifications (RFC 3464, ``message/delivery-status``): one report per
   per-recipient field group, its Action, Status, Remote-MTA and Diagnostic-Code;
3. auto-replies (RFC 3834 ``Auto-Submitted: auto-replied``, vacation headers and subjects):
   ``autoreply``, reason ``vacation``, never acted on;
4. the plain-text notices of MTAs that write no DSN (qmail, Exim, Gmail, Yahoo, Exchange 2003,
   DragonFly, OpenSMTPD, ...): the recipients named in the notice, each with the text that
   follows it as its diagnostic.

Every diagnostic goes through :func:`sendguard.classify`.  Where the bounce carries no
enhanced status code, ``status`` is Sisimai's pseudo code for the reason (``5.0.911`` for
userunknown, ...), so that reports stay comparable across MTAs.
"""

from __future__ import annotations

import bisect
import email
import email.policy
import hashlib
import itertools
import json
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from email.message import Message
from email.utils import getaddresses, parseaddr
from typing import Any, Literal

from sendguard._bounces.classify import (
    DEFAULT,
    WINDOW,
    Action,
    Classification,
    Rules,
    action_for,
    classify,
    parse_codes,
    stage_hint,
)
from sendguard._bounces.verdict import event_classification, hard_failure
from sendguard._errors import BounceParseError

__all__ = ["BounceReport", "bounce_message", "parse_bounce"]

BounceAction = Literal["failed", "delayed", "delivered", "complaint", "autoreply"]

_PSEUDO = {
    "undefined": "900",
    "onhold": "901",
    "syntaxerror": "902",
    "filtered": "910",
    "userunknown": "911",
    "hostunknown": "912",
    "hasmoved": "916",
    "rejected": "918",
    "norelaying": "909",
    "suspend": "921",
    "mailboxfull": "922",
    "emailtoolarge": "934",
    "systemerror": "930",
    "notaccept": "932",
    "mailererror": "939",
    "contenterror": "960",
    "spamdetected": "980",
    "virusdetected": "974",
    "networkerror": "944",
    "expired": "947",
    "securityerror": "970",
    "blocked": "971",
    "policyviolation": "972",
    "requireptr": "973",
    "badreputation": "971",
    "failedstarttls": "976",
    "ratelimited": "945",
    "authfailure": "975",
    "systemfull": "931",
    "notcompliantrfc": "960",
    "suppressed": "925",
}
"""Sisimai's pseudo status codes (``5.0.9xx``), used when a bounce carries no real one."""

_NO_RULE = "no rule matched"
MAX_BYTES = 10 * 1024 * 1024
"""Larger input is refused: a bounce is a notice, not an archive."""
MAX_PARTS = 256
"""Only the first MAX_PARTS MIME parts (depth first) are read; a DSN has three or four."""
MAX_RECIPIENTS = 2000
"""At most this many reports come from one bounce; recipients after them are not read."""
TIME_BUDGET = 10.0
"""Seconds :func:`parse_bounce` may take by default before it gives up (BounceParseError)."""
_NOTICE_SPAN = 2 * WINDOW
"""How much of a notice after a recipient's mention is read as its diagnostic."""


@dataclass(frozen=True, slots=True)
class BounceReport:
    """What one bounce says about one recipient."""

    recipient: str
    """The address the bounce is about (lower-cased domain; empty when the bounce names none)."""
    action: BounceAction
    status: str
    """Enhanced status code (RFC 3463), or Sisimai's ``x.0.9xx`` pseudo code for the reason."""
    reply_code: int | None
    diagnostic: str
    reason: str
    hard: bool
    """The address itself is dead: suppress it for good."""
    remote_mta: str = ""
    reporting_mta: str = ""
    original_recipient: str = ""
    """The address the message was sent to, when the recipient's side forwarded it or expanded
    an alias and the bounce is about the address it went on to (``recipient``): the DSN's
    Original-Recipient, or the "expanded from" / "generated from" of a Postfix, sendmail or
    Exim notice.  Empty when the bounce names no other address."""
    original_message_id: str = ""
    original_sender: str = ""
    """The envelope sender (or From) of the message that bounced, when the bounce tells."""
    feedback_type: str = ""
    """For complaints, the ARF Feedback-Type (``abuse``, ``opt-out``, ...)."""
    classification: Classification | None = field(default=None, compare=False, repr=False)
    trusted: bool = False
    """Set by :meth:`Guard.ingest_bounce`: the bounce carried a valid token of this guard."""
    suppressed: bool = False
    """Set by :meth:`Guard.ingest_bounce`: this report put the address on the suppression list."""

    @property
    def permanent(self) -> bool:
        """A permanent failure (a 5.x.x status)."""
        return self.status.startswith("5")


# -- entry point --------------------------------------------------------------------------------


def parse_bounce(
    raw: bytes | str | Message,
    *,
    rules: Rules = DEFAULT,
    time_budget: float | None = TIME_BUDGET,
) -> list[BounceReport]:
    """Read one bounce, complaint or auto-reply; one report per recipient it concerns.

    *raw* is the whole e-mail (``bytes``, ``str`` or an :class:`email.message.Message`; a
    leading UTF-8 byte-order mark, as an editor may write, is read past).  A
    message that is none of these (an ordinary e-mail) gives an empty list.  Input that is not
    an e-mail at all raises :class:`BounceParseError`, and nothing else is ever raised.

    The time taken grows linearly with the input: every text is read in bounded windows, at
    most :data:`MAX_PARTS` parts and :data:`MAX_RECIPIENTS` recipients are examined, and the
    parser checks *time_budget* (seconds; ``None``: no limit) between its steps, raising
    :class:`BounceParseError` once it is spent.
    """
    budget = _Budget(time_budget)
    if isinstance(raw, bytes | bytearray | str):
        data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else bytes(raw)
        data = data.removeprefix(_BOM)
        pieces = _MBOX_SEPARATOR.split(data) if data.startswith(b"From ") else []
        pieces = [p for p in pieces if p.strip()]
        if len(pieces) > 1:
            # An mbox of several bounces: each in turn, its reports in order, one budget.
            return [r for piece in pieces for r in _parse_one(b"From " + piece, rules, budget)]
    return _parse_one(raw, rules, budget)


class _Budget:
    """A deadline the parser checks between its steps (a thread cannot be stopped)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.deadline = None if seconds is None else time.monotonic() + seconds

    def check(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise BounceParseError(f"bounce too costly to read (over {self.seconds} s)")


def _parse_one(raw: bytes | str | Message, rules: Rules, budget: _Budget) -> list[BounceReport]:
    message = _as_message(raw)
    try:
        budget.check()
        return list(itertools.islice(_parse(_Scan(message, budget, rules), rules), MAX_RECIPIENTS))
    except BounceParseError:
        raise
    except Exception as exc:
        raise BounceParseError(f"unreadable bounce: {type(exc).__name__}: {exc}") from exc


def bounce_id(message: Message, reports: Sequence[BounceReport]) -> str:
    """A stable id of what a bounce says, so that one fed twice is recognised.

    A digest of each report's recipient, action, status and the original's Message-ID: the
    same DSN delivered again (or sent by another hop about the same failure) gets the same
    id, while a delay then a failure, or a failure of a later send (a new Message-ID), do
    not.  When no report names the original, the bounce's own Message-ID goes in too, or,
    without one, its date and what it says about each recipient.
    """
    digest = hashlib.sha256()
    for report in reports:
        fields = (
            report.recipient.lower(),
            report.action,
            report.status,
            report.feedback_type,
            report.original_message_id.strip().lower(),
        )
        digest.update("\0".join(fields).encode("utf-8", "surrogateescape") + b"\n")
    if not any(r.original_message_id for r in reports):
        own = str(message.get("Message-ID", "")).strip()
        if own:
            digest.update(b"own\0" + own.encode("utf-8", "surrogateescape"))
        else:
            said = [str(message.get("Date", "")), *(r.diagnostic for r in reports)]
            digest.update("\0".join(said).encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:32]


def bounce_message(raw: bytes | str | Message) -> Message:
    """*raw* as the e-mail message :func:`parse_bounce` reads (MIME boundaries repaired)."""
    return _as_message(raw)


def _as_message(raw: bytes | str | Message) -> Message:
    if isinstance(raw, Message):
        return raw
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise BounceParseError(
            f"expected bytes, str or an e-mail message, not {type(raw).__name__}"
        )
    data = bytes(raw).removeprefix(_BOM)
    if len(data) > MAX_BYTES:
        raise BounceParseError(f"{len(data)} bytes is too large for a bounce (limit {MAX_BYTES})")
    if not _HEADER_START.match(data):
        raise BounceParseError("not an e-mail message: it does not start with a header field")
    try:
        message = email.message_from_bytes(data, policy=email.policy.compat32)
    except Exception as exc:
        raise BounceParseError(f"not an e-mail message: {exc}") from exc
    try:
        return _repair(message, data)
    except Exception:  # noqa: BLE001 (a repair that fails leaves the message as parsed)
        return message


def _repair(message: Message, data: bytes) -> Message:
    """The message with every multipart whose boundary was not found read with the one used.

    Bounces are written by many programs, not all careful: a declared boundary that the body
    never uses, or a ``boundary=`` parameter on a line that lost its folding white space.
    """
    del data
    for part in list(itertools.islice(message.walk(), MAX_PARTS)):
        if part.get_content_maintype() != "multipart" or isinstance(part.get_payload(), list):
            continue
        body = part.get_payload()
        text = body if isinstance(body, str) else ""
        found = _BOUNDARY_TEXT.search(text)
        if found is not None:
            wrapper = f'Content-Type: multipart/mixed; boundary="{found.group(1)}"\n\n{text}'
            reparsed = email.message_from_string(wrapper, policy=email.policy.compat32)
            inner = reparsed.get_payload()
            if isinstance(inner, list) and inner:
                part.set_payload(inner)
                part.set_boundary(found.group(1))
                continue
        # No boundary at all: read the body as the plain text it is.
        part.set_type("text/plain")
    return message


_BOUNDARY_TEXT = re.compile(r"^--([\x21-\x7e]{1,200}?)[ \t]*\r?$", re.MULTILINE)


_MBOX_SEPARATOR = re.compile(
    rb"(?:^|\r?\n)From (?=\S+ +(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) \S+ +\d+ [\d:]+ \d{4}\r?\n)"
)
_BOM = b"\xef\xbb\xbf"
"""A UTF-8 byte-order mark: no MTA writes one, but an editor or a Windows tool may."""
_HEADER_START = re.compile(rb"\A(?:From [^\r\n]*\r?\n)?[\x21-\x39\x3b-\x7e]+[ \t]*:")


_ORIGINAL_TYPES = ("message/rfc822", "message/global")


class _Scan:
    """One bounce being read: its parts (walked once), and what is computed once per part.

    Everything the steps below need more than once is computed here once, so that no step
    rescans the message per part or per recipient.
    """

    def __init__(self, message: Message, budget: _Budget, rules: Rules) -> None:
        self.message = message
        self.budget = budget
        self.rules = rules
        self._classified: dict[tuple[str, str | None, str | None, bool], Classification] = {}
        self._stages: dict[tuple[str, str, None], str | None] = {}
        self.parts: list[Message] = []
        self.types: list[str] = []
        self.inside: set[int] = set()
        """Parts of a returned original (``message/rfc822`` or ``message/global``), by id."""
        stack: list[tuple[Message, bool]] = [(message, False)]
        while stack and len(self.parts) < MAX_PARTS:
            part, inside = stack.pop()
            ctype = part.get_content_type()
            self.parts.append(part)
            self.types.append(ctype)
            if inside:
                self.inside.add(id(part))
            payload = part.get_payload()
            if isinstance(payload, list):
                inner = inside or ctype in _ORIGINAL_TYPES
                stack.extend((p, inner) for p in reversed(payload) if isinstance(p, Message))
        self._texts: dict[int, str] = {}
        self._notice: str | None = None

    def text(self, part: Message) -> str:
        """:func:`_text` of *part*, decoded once."""
        found = self._texts.get(id(part))
        if found is None:
            self.budget.check()
            found = self._texts[id(part)] = _text(part)
        return found

    def classify(
        self,
        text: str,
        *,
        stage: str | None = None,
        enhanced_code: str | None = None,
        exit_status: bool = False,
    ) -> Classification:
        """:func:`_classify_reply` with this bounce's rules, once per distinct text.

        A bounce that names one recipient many times gives each mention the same text: it is
        classified once, so the work stays proportional to the distinct text read.
        """
        key = (text, stage, enhanced_code, exit_status)
        found = self._classified.get(key)
        if found is None:
            found = _classify_reply(
                text,
                stage=stage,
                enhanced_code=enhanced_code,
                rules=self.rules,
                exit_status=exit_status,
            )
            if len(self._classified) < MAX_RECIPIENTS:
                self._classified[key] = found
        return found

    def stage(self, text: str) -> str | None:
        """:func:`stage_hint` of *text* (its first window), once per distinct text."""
        key = (text, "stage", None)
        if key not in self._stages:
            self._stages[key] = stage_hint(text[: 4 * WINDOW])
        return self._stages[key]

    def notice(self) -> str:
        """:func:`_notice_text`, computed once."""
        if self._notice is None:
            self._notice = _notice_text(self)
        return self._notice


def _parse(scan: _Scan, rules: Rules) -> Iterator[BounceReport]:
    message = scan.message
    if "message/feedback-report" in scan.types or _is_legacy_complaint(message):
        yield from _complaint(message, scan.parts)
        return
    reports = list(itertools.islice(_dsn(scan, rules), MAX_RECIPIENTS))
    if reports:
        yield from reports
        return
    ses = _ses_notification(message)
    if ses is not None:
        yield from _ses(ses, rules)
    elif _looks_like_bounce(message):
        yield from _notice(scan, rules)
    elif _is_autoreply(message):
        yield _autoreply(message)


# -- what a diagnostic says ---------------------------------------------------------------------

_TRANSCRIPT_REPLY = re.compile(r"(?:\bOut:|<<<)[ \t]{0,4}([2-5])\d\d(?=[ -]|$)", re.MULTILINE)
"""A server's reply in a session transcript (Postfix's "Out: 250 ...", sendmail's "<<< 550")."""
_EXIT_STATUS = re.compile(
    # A local mailer's exit status (Postfix pipe and local, sendmail's prog mailer, procmail,
    # maildrop): a number that is no SMTP reply.
    r"\b(?:(?:died|exited|terminated)\s{1,4}with\s{1,4}(?:exit\s{1,4})?(?:status|code|value)"
    r"|exit(?:\s{1,4}(?:status|code|value))?|return(?:ed)?\s{1,4}(?:status|code))"
    r"[ \t]{0,4}[:=]?[ \t]{0,4}(\d{1,3})\b",
    re.IGNORECASE,
)
_BARE_EXIT = re.compile(r"\A\s*(\d{1,3})\b(?![.\d])")
"""sendmail's "Diagnostic-Code: X-Unix; 71": a mailer's exit status alone."""
_MAILER_EXIT = "a local mailer's exit status"


def _failing_reply(text: str) -> str:
    """A transcript's text from its first failure reply on (the 250s before it are no answer).

    A text that is no transcript, or has no 2xx or 3xx reply before its first 4xx or 5xx, is
    returned as it is.
    """
    passed = False
    for found in _TRANSCRIPT_REPLY.finditer(text):
        if found.group(1) in "23":
            passed = True
        elif passed:
            return text[found.start() :]
        else:
            break
    return text


def _classify_reply(
    text: str,
    *,
    stage: str | None,
    enhanced_code: str | None,
    rules: Rules,
    exit_status: bool = False,
) -> Classification:
    """:func:`classify` of a diagnostic, which may be a transcript or name an exit status.

    A mailer's exit status (``Command died with status 67``, ``exit code 250``, sendmail's
    bare ``X-Unix; 71``) is masked before the text is read, so that no exit status is taken
    for an SMTP reply code (a "250" for a delivery); what the text says besides still counts,
    and a text that says nothing else is a mailer error.
    """
    read = _failing_reply(text)
    masked = _EXIT_STATUS.sub(" (number elided) ", read)
    if exit_status:
        masked = _BARE_EXIT.sub(" (number elided) ", masked, count=1)
    if masked != read and classify(masked, stage=stage, rules=rules).rule == _NO_RULE:
        # Nothing but the exit status (the DSN's Status says no more than that it failed).
        permanent = (enhanced_code or "").startswith("5")
        return Classification(
            "mailererror",
            action_for("mailererror", permanent=permanent),
            permanent,
            None,
            enhanced_code,
            _MAILER_EXIT,
            text,
        )
    return classify(masked, stage=stage, enhanced_code=enhanced_code, rules=rules)


# -- text helpers -------------------------------------------------------------------------------

_ADDRESS = re.compile(
    # Local part and labels may be non-ASCII (RFC 6531); labels are at most 63 characters.
    r"(?<![\w.+=-])([\w.!#$%&'*+/=?^`{|}~-]{1,64}@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+"
    r"(?:[^\W\d_]{2,63}|xn--[a-z0-9-]{1,59}))(?![\w-])",
    re.IGNORECASE,
)
_SPACES = re.compile(r"\s+")
_NOT_RECIPIENTS = re.compile(
    r"^(?:mailer-daemon|postmaster|abuse|root|noreply|no-reply|bounces?|"
    r"double-bounce|mail-daemon|daemon|nobody)@",
    re.IGNORECASE,
)


def _text(part: Message) -> str:
    """A text part's content as str, whatever its transfer encoding and charset."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        raw = part.get_payload()
        return raw if isinstance(raw, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


_SCRIPT = re.compile(r"<(script|style)\b", re.IGNORECASE)


def _drop_scripts(text: str) -> str:
    """*text* without its ``<script>`` and ``<style>`` elements, in one pass."""
    lower = text.lower()
    kept: list[str] = []
    at = 0
    unclosed: set[str] = set()  # no closing tag after here: later openings cannot close either
    for found in _SCRIPT.finditer(lower):
        name = found.group(1)
        if found.start() < at or name in unclosed:
            continue
        end = lower.find(f"</{name}>", found.end())
        if end < 0:
            unclosed.add(name)
            continue
        kept += [text[at : found.start()], " "]
        at = end + len(name) + 3
    return "".join([*kept, text[at:]])


def _strip_html(text: str) -> str:
    text = _drop_scripts(text)
    text = re.sub(r"(?i)<br\s*/?>|</p>|</div>|</tr>|</li>", "\n", text)
    text = re.sub(r"<[^<>]+>", " ", text)
    return (
        text.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
        .replace("&quot;", '"')
    )


def _fold(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


_UTF8_ESCAPE = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")


def _unescape(value: str) -> str:
    r"""An RFC 6533 ``utf-8`` address with its ``\x{HHHH}`` escapes decoded."""

    def char(found: re.Match[str]) -> str:
        code = int(found.group(1), 16)
        return chr(code) if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd"

    return _UTF8_ESCAPE.sub(char, value)


def _unsurrogate(value: str) -> str:
    """Raw UTF-8 that the parser kept as surrogate escapes, as the text it is."""
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeError:
        return value


def _address(value: str) -> str:
    r"""The address in a DSN recipient field or header (``rfc822; <a@b>``), normalized.

    The ``utf-8`` address type of RFC 6533 may carry non-ASCII as ``\x{HHHH}``: decoded.
    """
    value = _unsurrogate(value)
    kind, sep, rest = value.partition(";")
    if sep:
        value = _unescape(rest) if kind.strip().lower() == "utf-8" else rest
    _, addr = parseaddr(value.strip())
    addr = (addr or value).strip().strip("<>").strip()
    if "@" not in addr:
        found = _ADDRESS.search(value)
        return found.group(1).lower() if found else ""
    local, _, domain = addr.rpartition("@")
    return f"{local}@{domain.lower()}" if local else ""


def _key(address: str) -> str:
    return address.lower()


# -- complaints (ARF) ---------------------------------------------------------------------------


def _is_legacy_complaint(message: Message) -> bool:
    if message.get("X-Apple-Unsubscribe", "").strip().lower() == "true":
        return True
    subject = _fold(str(message.get("Subject", ""))).lower()
    sender = str(message.get("From", "")).lower()
    return subject.startswith("complaint about message from") or (
        "staff@hotmail.com" in sender and "complaint" in subject
    )


def _complaint(message: Message, parts: list[Message]) -> Iterator[BounceReport]:
    feedback: Message | None = None
    original: Message | None = None
    for part in parts:
        ctype = part.get_content_type()
        if ctype == "message/feedback-report":
            feedback = _first_block(part)
        elif ctype in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers"):
            original = original or _embedded(part)
    fields = feedback or Message()
    # Who complained, most certain first.  The original's To names the complainer only when it
    # names nobody else: a complaint must never suppress the other recipients of a message.
    sources: list[list[str]] = [
        [str(v) for v in fields.get_all("Original-Rcpt-To", []) or []]
        + [str(v) for v in fields.get_all("Removal-Recipient", []) or []],
    ]
    if original is not None:
        sources.append([str(original.get("X-HmXmrOriginalRecipient", ""))])
        to = [a for _, a in getaddresses([str(v) for v in original.get_all("To", [])]) if a]
        sources.append(to if len(to) == 1 else [])
    if message.get("X-Apple-Unsubscribe"):
        sources.append([a for _, a in getaddresses([str(message.get("To", ""))])])
    recipients: list[str] = []
    for candidates in sources:
        recipients = _unique(_address(c) for c in candidates if c and "@" in c)
        if recipients:
            break
    kind = str(fields.get("Feedback-Type", "")).strip().lower()
    if not kind:
        kind = "opt-out" if message.get("X-Apple-Unsubscribe") else "abuse"
    found = _verdict("feedback", Action.SUPPRESS, f"ARF feedback report ({kind})", kind)
    message_id = sender = ""
    if original is not None:
        message_id = str(original.get("Message-ID", "")).strip()
        sender = _address(str(original.get("Return-Path") or original.get("From") or ""))
    for recipient in recipients or [""]:
        yield BounceReport(
            recipient=recipient,
            action="complaint",
            status="",
            reply_code=None,
            diagnostic=_fold(str(fields.get("User-Agent", "")) + " " + kind),
            reason="feedback",
            hard=False,
            reporting_mta=str(fields.get("Reporting-MTA", "")).split(";")[-1].strip(),
            original_message_id=message_id,
            original_sender=sender,
            feedback_type=kind,
            classification=found,
        )


def _unique(values: Iterable[str]) -> list[str]:
    seen: dict[str, str] = {}
    for value in values:
        if value and _key(value) not in seen:
            seen[_key(value)] = value
    return list(seen.values())


def _first_block(part: Message) -> Message:
    """The first header block of a ``message/*`` part that holds header fields."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    text = payload if isinstance(payload, str) else ""
    return email.message_from_string(text.lstrip(), policy=email.policy.compat32)


def _global_text(part: Message) -> str | None:
    """A ``message/global-*`` part (RFC 6533) read as the UTF-8 it is, or None for others.

    Their header fields are raw UTF-8, which the parser keeps as bytes; read as ASCII they
    turn into replacement characters, and the address they name into a garbled one.
    """
    if not part.get_content_type().startswith("message/global"):
        return None
    payload = part.get_payload()
    if isinstance(payload, list):
        blocks = [p.as_bytes() for p in payload if isinstance(p, Message)]
        return b"\n\n".join(blocks).decode("utf-8", "replace")
    if isinstance(payload, str):
        raw = part.get_payload(decode=True)
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else payload
    return None


def _embedded(part: Message) -> Message | None:
    """The original message (or its headers) inside a bounce part."""
    text = _global_text(part)
    if text is not None:
        return email.message_from_string(text.lstrip(), policy=email.policy.compat32)
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    if isinstance(payload, str):
        text = _text(part) if part.get("Content-Transfer-Encoding") else payload
        return email.message_from_string(text.lstrip(), policy=email.policy.compat32)
    return None


# -- delivery status notifications (RFC 3464) ---------------------------------------------------


_FIELD = re.compile(r"^([A-Za-z][\w-]*)[ \t]*:[ \t]*(.*)$")
_RECIPIENT_FIELDS = ("final-recipient", "original-recipient")


def _dsn_text(scan: _Scan, part: Message) -> str:
    text = _global_text(part)
    if text is not None:
        return text
    payload = part.get_payload()
    if isinstance(payload, list):
        return "\n\n".join(p.as_string() for p in payload if isinstance(p, Message))
    return scan.text(part) if isinstance(payload, str) else ""


_FIELD_MAX = 4 * WINDOW
"""Longer DSN field values (folded lines included) are cut there."""


def _dsn_groups(scan: _Scan, part: Message) -> list[Message]:
    """The field groups of a delivery-status part.

    Groups are split at blank lines as RFC 3464 says, and also where a recipient field repeats
    inside one group, which some MTAs (AOL, Amazon) write without the blank line.  One pass
    over the lines; at most :data:`MAX_RECIPIENTS` groups and :data:`_FIELD_MAX` characters a
    field.
    """
    groups: list[list[tuple[str, list[str]]]] = []
    current: list[tuple[str, list[str]]] | None = None
    names: set[str] = set()
    size = 0
    for line in _unquote(_dsn_text(scan, part)).splitlines():
        if not line.strip():
            current = None
            continue
        if line[0] in " \t" and current:
            if size < _FIELD_MAX:
                current[-1][1].append(line.strip())
                size += len(line)
            continue
        found = _FIELD.match(line)
        if found is None:
            continue
        name, value = found.group(1), found.group(2)
        lower = name.lower()
        if current is None or (lower in _RECIPIENT_FIELDS and lower in names):
            if len(groups) > MAX_RECIPIENTS:
                break
            scan.budget.check()
            current, names = [], set()
            groups.append(current)
        current.append((name, [value]))
        names.add(lower)
        size = len(value)
    blocks = []
    for fields in groups:
        block = Message()
        for name, pieces in fields:
            block[name] = " ".join(pieces)[:_FIELD_MAX]
        blocks.append(block)
    return blocks


_DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
_INLINE_DSN = re.compile(
    r"^Final-Recipient[ \t]*:[ \t]*[\w-]+[ \t]*;", re.IGNORECASE | re.MULTILINE
)


def _dsn(scan: _Scan, rules: Rules) -> Iterator[BounceReport]:
    notice = scan.notice()
    original = _original(scan.parts)
    sources = [p for p, t in zip(scan.parts, scan.types, strict=True) if t in _DSN_TYPES]
    if not sources:
        # No delivery-status part, but DSN fields in the text (a broken MIME structure, or an
        # MTA that writes the fields inline): read them there.
        inline = (
            p
            for p, t in zip(scan.parts, scan.types, strict=True)
            if t == "text/plain"
            and not p.is_multipart()
            and id(p) not in scan.inside
            and _INLINE_DSN.search(_unquote(scan.text(p)))
        )
        sources = list(itertools.islice(inline, 1))
    for part in sources:
        blocks = _dsn_groups(scan, part)
        per_message = Message()
        reporting_mta = ""
        for block in blocks:
            if block.get("Reporting-MTA") or block.get("Arrival-Date"):
                per_message = block
                reporting_mta = str(block.get("Reporting-MTA", "")).split(";")[-1].strip()
        recipients: list[Message] = [
            b for b in blocks if b.get("Final-Recipient") or b.get("Original-Recipient")
        ]
        recipients = [b for b in recipients if _recipient_of(b)] or recipients
        names = [_recipient_of(b) for b in recipients]
        mentions = _Mentions(notice, names)
        forwarded = mentions.origins(_expansions(notice))
        for index, block in enumerate(recipients):
            scan.budget.check()
            yield _dsn_report(
                block,
                per_message=per_message,
                names=names,
                index=index,
                notice=mentions,
                original=original,
                reporting_mta=reporting_mta,
                scan=scan,
                forwarded=forwarded,
            )


def _recipient_of(block: Message) -> str:
    for name in ("Final-Recipient", "Original-Recipient", "X-Actual-Recipient"):
        value = block.get(name)
        if value and "@" in str(value):
            return _address(str(value))
    return ""


def _original_recipient_of(block: Message, forwarded: dict[str, str]) -> str:
    """The address a group's recipient was forwarded from, if the bounce names one.

    Its Original-Recipient, else what the notice says it was expanded or generated from (Exim
    writes no Original-Recipient).  sendmail's X-Actual-Recipient is no such address: there
    Final-Recipient is the one sent to and X-Actual-Recipient the one it was expanded to.
    """
    value = str(block.get("Original-Recipient", ""))
    if "@" in value:
        return _address(value)
    final = str(block.get("Final-Recipient", ""))
    return forwarded.get(_key(_address(final)), "") if "@" in final else ""


def _dsn_report(
    block: Message,
    *,
    per_message: Message,
    names: list[str],
    index: int,
    notice: _Mentions,
    original: Message | None,
    reporting_mta: str,
    scan: _Scan,
    forwarded: dict[str, str],
) -> BounceReport:
    recipient = names[index]
    diagnostic_field = str(block.get("Diagnostic-Code", ""))
    diagnostic = _fold(_after_type(diagnostic_field))
    # "X-Unix; 71" (sendmail), "x-unix; procmail: ..." (Postfix): a program's exit status
    # or output, not an SMTP reply; the Status is the one mapped from the exit status.
    unix = diagnostic_field.partition(";")[0].strip().lower() == "x-unix"
    program = unix or _is_program(block)
    status_field = _fold(str(block.get("Status", "")))
    status_code = re.match(r"[245]\.\d{1,3}\.\d{1,3}", status_field)
    action_field = _fold(str(block.get("Action", ""))).lower()
    remote = _after_type(str(block.get("Remote-MTA", "")))
    from_notice = notice.about(recipient) if recipient else ""
    stage = scan.stage(diagnostic) or scan.stage(from_notice)
    dsn_code = status_code.group(0) if status_code and not program else None
    found = (
        scan.classify(
            diagnostic,
            stage=stage,
            enhanced_code=_code_in(diagnostic, dsn_code),
            exit_status=unix,
        )
        if diagnostic
        else None
    )
    if from_notice and (found is None or found.rule == _NO_RULE):
        better = scan.classify(from_notice, stage=stage)
        if better.rule != _NO_RULE or found is None:
            found, diagnostic = better, diagnostic or from_notice
    if found is None or found.rule == _NO_RULE:
        notice_all = scan.classify(notice.folded(), stage=stage)
        if notice_all.rule != _NO_RULE and len(names) <= 1:
            found = notice_all
    if found is None or found.rule == _NO_RULE:
        # The Status field's comment may say more: "4.0.0 (host name lookup failure)".
        by_status = scan.classify(status_field)
        if found is None or by_status.rule != _NO_RULE:
            found = by_status
    if program:
        found = _program_failure(found)
    status = status_code.group(0) if status_code else None
    action = _dsn_action(action_field, status, found)
    return _report(
        recipient,
        action,
        found,
        diagnostic,
        status,
        remote_mta=remote.strip(),
        reporting_mta=reporting_mta,
        original=original,
        per_message=per_message,
        original_recipient=_original_recipient_of(block, forwarded),
    )


def _is_program(block: Message) -> bool:
    """Whether a group's recipient was delivered to a program (sendmail's ``X-Unix; |...``)."""
    for name in ("X-Actual-Recipient", "Final-Recipient"):
        kind, _, value = str(block.get(name, "")).partition(";")
        if value.strip().startswith("|") or (kind.strip().lower() == "x-unix" and value):
            return True
    return False


def _program_failure(found: Classification) -> Classification:
    """What a failed delivery to a program (a pipe, a mailbox command) says.

    A program's failure is a mailer error of the recipient's side, never a dead address:
    its exit status is mapped to a status mechanically (Postfix turns procmail's exit 67,
    EX_NOUSER, into "5.1.1 user unknown" whatever procmail failed at; sendmail reads
    EX_UNAVAILABLE as "Service unavailable").  What its output says besides (a quota) stays.
    """
    generic = found.reason in ("systemerror", "onhold") or found.action is Action.SUPPRESS
    if found.rule != _NO_RULE and not generic:
        return found
    return replace(
        found,
        reason="mailererror",
        action=action_for("mailererror", permanent=found.permanent),
        rule=_MAILER_EXIT if found.rule == _MAILER_EXIT else "a program's delivery failed",
    )


def _code_in(diagnostic: str, dsn_code: str | None) -> str | None:
    """The diagnostic's own enhanced code, else the DSN Status when it is specific."""
    if parse_codes(diagnostic)[1] is not None:
        return None  # classify() reads it from the text
    return dsn_code if dsn_code and not dsn_code.endswith(".0.0") else None


def _after_type(value: str) -> str:
    """A DSN field without its type (``smtp; 550 ...`` → ``550 ...``)."""
    head, sep, rest = value.partition(";")
    if sep and re.fullmatch(r"\s*[\w.-]+\s*", head):
        return rest.strip()
    return value.strip()


def _dsn_action(field_value: str, status: str | None, found: Classification) -> BounceAction:
    if field_value.startswith(("delayed", "delay")):
        return "delayed"
    if field_value.startswith(("delivered", "relayed", "expanded")):
        return "delivered"
    if field_value.startswith("fail"):
        return "failed"
    code = status or found.enhanced_code or ""
    if code.startswith("2"):
        return "delivered"
    if code.startswith("4") and found.reason != "expired":
        return "delayed"
    return "failed"


# -- auto-replies (RFC 3834) --------------------------------------------------------------------

_AUTOREPLY_SUBJECT = re.compile(
    r"^\s*(?:auto(?:matic)?[ -]?(?:reply|response|answer)|auto:|out of (?:the )?office|"
    r"away from|vacation|i am away|abwesenheit|absence|r[ée]ponse automatique|"
    r"risposta automatica|respuesta autom[áa]tica|away until|on leave)",
    re.IGNORECASE,
)


def _is_autoreply(message: Message) -> bool:
    auto = str(message.get("Auto-Submitted", "")).strip().lower()
    if auto.startswith("auto-replied"):
        return True
    if str(message.get("X-Apple-Action", "")).strip().upper() == "VACATION":
        return True
    if message.get("X-Autoreply") or message.get("X-Autorespond"):
        return True
    if str(message.get("Precedence", "")).strip().lower() == "auto_reply":
        return True
    return bool(_AUTOREPLY_SUBJECT.match(_fold(str(message.get("Subject", "")))))


def _autoreply(message: Message) -> BounceReport:
    sender = _address(str(message.get("From", "")))
    subject = _fold(str(message.get("Subject", "")))
    return BounceReport(
        recipient=sender,
        action="autoreply",
        status="",
        reply_code=None,
        diagnostic=subject,
        reason="vacation",
        hard=False,
        original_message_id=_fold(str(message.get("In-Reply-To", ""))),
        classification=_verdict("vacation", Action.NONE, "RFC 3834 auto-reply", subject),
    )


# -- plain-text MTA notices ---------------------------------------------------------------------

_BOUNCE_SENDER = re.compile(
    r"mailer-daemon|post_?master|mail delivery|mail-daemon|mail administrator|"
    r"delivery subsystem|mailer daemon|maildelivery|bounce",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (?:status|fail|notification|problem|report)|"
    r"failure notice|returned mail|mail delivery failed|could not be delivered|"
    r"delivery has failed|nondeliverable|non-?delivery|returned to sender|"
    r"mail system error|warning: message|permanent error|delayed mail|"
    r"delivery (?:final )?failure|failed delivery|mail could not|unable to deliver|"
    r"message not delivered|error sending message|rejected|loop (?:alert|detected)",
    re.IGNORECASE,
)


def _looks_like_bounce(message: Message) -> bool:
    sender = str(message.get("From", "")) + " " + str(message.get("Return-Path", ""))
    subject = _fold(str(message.get("Subject", "")))
    return bool(_BOUNCE_SENDER.search(sender) or _BOUNCE_SUBJECT.search(subject))


_ORIGINAL_MARKER = re.compile(
    r"^[ \t>]*+(?:(?:-{2,}|={2,}|_{2,})[ \t]*+)?(?:"
    r"(?:this is a |a )?copy of (?:the|your) (?:original )?message|"
    r"below this line is a copy|original message|original message (?:headers )?follows|"
    r"original (?:mail|message) (?:is )?as follows|"
    r"message headers follow|headers of the (?:original|returned) message|"
    r"(?:the )?(?:original |returned |undelivered )?message (?:headers?|text)? ?(?:follows|below)|"
    r"returned message|undelivered message|unsent message below|"
    r"included is a copy|"
    r"your message reads|\*\*\* ?original|"
    r"content-type: message/rfc822"
    r")",
    re.IGNORECASE | re.MULTILINE,
)
_HEADER_BLOCK = re.compile(
    r"^(?:Return-Path|Received|Message-I[Dd]|DKIM-Signature|X-[\w-]+|MIME-Version|"
    r"Content-Type|Delivered-To):[^\n]*\n(?:[ \t][^\n]*\n)*"
    r"(?:[\w-]+:[^\n]*\n)",
    re.MULTILINE,
)


_FIELDS = (
    r"(?:From|To|Cc|Bcc|Subject|Date|Reply-To|Sender|Message-I[Dd]|Return-Path|Received|"
    r"MIME-Version|Content-Type|User-Agent|X-[\w-]{1,60})"
)
_ADDRESS_FIELDS = r"(?:From|To|Cc|Bcc|Reply-To|Sender|Return-Path|Received|Message-I[Dd])"


def _two_fields(first: str, then: str) -> str:
    # One quote level and one space at most before a field, so that no two repeats can
    # share a character.
    return rf"^(?:>[ \t]?)?{first}[ \t]*:[^\n]*\n(?:>?[ \t][^\n]*\n)*(?:>[ \t]?)?{then}[ \t]*:"


_QUOTED_HEADERS = re.compile(
    # Two header fields in a row at the start of lines, quoted ("> ") or not, one of them naming
    # addresses: the returned original's header, whose To, Cc and From are no recipients of the
    # notice (a notice may quote the Subject and Date alone before its own text).
    f"{_two_fields(_ADDRESS_FIELDS, _FIELDS)}|{_two_fields(_FIELDS, _ADDRESS_FIELDS)}",
    re.IGNORECASE | re.MULTILINE,
)


def _notice_text(scan: _Scan) -> str:
    """The human-readable part of a bounce, without the returned original."""
    texts: list[str] = []
    for part, ctype in zip(scan.parts, scan.types, strict=True):
        if part.is_multipart():
            continue
        if ctype not in ("text/plain", "text/html"):
            continue
        if id(part) in scan.inside:
            continue
        text = scan.text(part)
        texts.append(_strip_html(text) if ctype == "text/html" else text)
        if ctype == "text/plain":
            break  # the first plain part is the notice; the html twin says the same
    text = _unquote("\n".join(texts))
    cut = _ORIGINAL_MARKER.search(text)
    if cut and cut.start() > 0:
        text = text[: cut.start()]
    header = _HEADER_BLOCK.search(text)
    if header and header.start() > 0:
        text = text[: header.start()]
    quoted = _QUOTED_HEADERS.search(text)
    if quoted and quoted.start() > 0:
        text = text[: quoted.start()]
    return text


def _unquote(text: str) -> str:
    """A bounce forwarded as a quotation ("> ..." on most lines) with one level removed."""
    lines = [line for line in text.splitlines() if line.strip()]
    quoted = sum(1 for line in lines if line.startswith(">"))
    if not lines or quoted * 2 < len(lines):
        return text
    return re.sub(r"^> ?", "", text, flags=re.MULTILINE)


def _original(parts: list[Message]) -> Message | None:
    for part in parts:
        if part.get_content_type() in (
            "message/rfc822",
            "text/rfc822-headers",
            "message/rfc822-headers",
            "message/global",
            "message/global-headers",
        ):
            found = _embedded(part)
            if found is not None:
                return found
    return None


_LINE_HEAD = re.compile(r"^(?:\d{3}[ -]+)?<?([\w.-]{1,255})", re.MULTILINE)
_FALLBACK_FINDS = 32
"""Recipients the address pattern does not see (e.g. non-ASCII domains) looked up by find."""


class _Mentions:
    """Where each recipient is mentioned in a notice, found in one pass over it.

    :meth:`about` gives the text that concerns one recipient: from its first mention to the
    next mention of another one (or a line that starts with another one's domain: sendmail
    writes "550 example.org (smtp)... 550 Host unknown" before the address), at most
    :data:`_NOTICE_SPAN` characters.
    """

    def __init__(self, notice: str, names: list[str]) -> None:
        self.notice = notice
        self._folded: str | None = None
        self._about: dict[str, str] = {}
        lower = notice.lower()
        keys = {_key(n) for n in names if n}
        self.first: dict[str, int] = {}
        self.at: list[tuple[int, str]] = []
        for found in _ADDRESS.finditer(lower):
            key = found.group(1)
            if key in keys:
                self.at.append((found.start(1), key))
                self.first.setdefault(key, found.start(1))
        missing = [k for k in names if k and _key(k) not in self.first]
        for key in dict.fromkeys(_key(k) for k in missing[:_FALLBACK_FINDS]):
            at = lower.find(key)
            for _ in range(_FALLBACK_FINDS):
                if at < 0:
                    break
                self.at.append((at, key))
                self.first.setdefault(key, at)
                at = lower.find(key, at + len(key))
        self.at.sort()
        self.domains = Counter(k.rpartition("@")[2] for k in keys)
        self.lines: list[tuple[int, tuple[str, ...]]] = []
        for found in _LINE_HEAD.finditer(lower):
            token = found.group(1)
            heads = [token[:i] for i, c in enumerate(token) if c in ".-"] + [token]
            matched = tuple(d for d in heads if d in self.domains)
            if matched:
                self.lines.append((found.start(), matched))

    def origins(self, expansions: list[tuple[int, str]]) -> dict[str, str]:
        """Each recipient's original address: the first expansion after its mention.

        *expansions* are (position, address) of "expanded from" / "generated from" remarks,
        which follow the recipient they are about (Postfix ``<b@x> (expanded from <a@y>):``,
        Exim ``b@x`` then ``(generated from a@y)`` on the next line).
        """
        found: dict[str, str] = {}
        for at, address in expansions:
            before = bisect.bisect_left(self.at, (at, "")) - 1
            if before >= 0:
                key = self.at[before][1]
                if key != _key(address):
                    found.setdefault(key, address)
        return found

    def folded(self) -> str:
        """The whole notice, white space folded (computed once)."""
        if self._folded is None:
            self._folded = _fold(self.notice)
        return self._folded

    def about(self, recipient: str) -> str:
        key = _key(recipient)
        if key not in self._about:
            self._about[key] = self._text_about(recipient, key)
        return self._about[key]

    def _text_about(self, recipient: str, key: str) -> str:
        start = self.first.get(key)
        if start is None:
            return ""
        after = start + len(recipient)
        end = min(len(self.notice), after + _NOTICE_SPAN)
        for at, other in self.at[bisect.bisect_left(self.at, (after, "")) :]:
            if at >= end:
                break
            if other != key:
                end = at
                break
        own = key.rpartition("@")[2]
        for at, domains in self.lines[bisect.bisect_left(self.lines, (after, ())) :]:
            if at >= end:
                break
            if any(self.domains[d] > (d == own) for d in domains):
                end = at
                break
        return _fold(self.notice[after:end].lstrip(">:, \t\n"))


def _notice(scan: _Scan, rules: Rules) -> Iterator[BounceReport]:
    message = scan.message
    notice = scan.notice()
    original = _original(scan.parts)
    if original is None:
        original = _inline_original(scan)
    excluded = {_key(_address(str(message.get(h, "")))) for h in ("From", "To", "Return-Path")}
    if original is not None:
        excluded |= {
            _key(_address(str(original.get(h, ""))))
            for h in ("From", "Return-Path", "Sender", "Reply-To")
        }
    excluded |= {_key(_address(m.group(1))) for m in _SENDER_MENTION.finditer(notice)}
    excluded |= {_key(_address(m.group(1))) for m in _QUOTED_FROM.finditer(notice)}
    excluded |= {_key(m.group(1)) for m in _MESSAGE_IDS.finditer(notice)}
    excluded |= {_key(_address(m.group(1).rstrip(".,;:)"))) for m in _HELP_MENTION.finditer(notice)}
    excluded.discard("")
    expansions = _expansions(notice)
    # An address something was forwarded from is the original recipient of that one, not a
    # recipient of its own.
    excluded |= {_key(address) for _, address in expansions}
    program = False
    names = _unique(
        _address(m.group(1))
        for m in _ADDRESS.finditer(notice)
        if _key(m.group(1)) not in excluded and not _NOT_RECIPIENTS.match(m.group(1))
    )[:MAX_RECIPIENTS]
    if not names and expansions:
        # What failed was no address (a pipe, a file an alias or .forward delivers to): the
        # address it was generated from is the one the mail was sent to.
        names = _unique(address for _, address in expansions)[:MAX_RECIPIENTS]
        expansions = []
        program = True
    if not names and original is not None:
        # The original's To names the recipient only when it names one address alone, and
        # never its Cc: a notice that names nobody must not fail the others of a message.
        to = _unique(
            _address(a) for _, a in getaddresses([str(v) for v in original.get_all("To", [])])
        )
        names = [n for n in to if _key(n) not in excluded] if len(to) == 1 else []
    delayed = bool(_DELAYED.search(notice))
    mentions = _Mentions(notice, names)
    forwarded = mentions.origins(expansions)
    for recipient in names or [""]:
        scan.budget.check()
        diagnostic = mentions.about(recipient) if recipient else ""
        found = scan.classify(diagnostic)
        if (not diagnostic or found.rule == _NO_RULE) and len(names) <= 1:
            diagnostic = mentions.folded()[:WINDOW]
            found = scan.classify(diagnostic)
        if program:
            found = _program_failure(found)
        action: BounceAction = "delayed" if delayed and not found.permanent else "failed"
        if delayed and found.reason == "expired" and found.reply_code is None:
            action = "delayed"
        yield _report(
            recipient,
            action,
            found,
            diagnostic,
            None,
            reporting_mta=_mta_of(message),
            original=original,
            original_recipient=forwarded.get(_key(recipient), ""),
            timed_out=bool(_TIMED_OUT.search(diagnostic)),
        )


_TIMED_OUT = re.compile(
    # The MTA gave up after temporary failures (Exim's retry rules, a queue's lifetime): the
    # cause it names was temporary, a 4.x.x, though the message is returned.
    r"retry time(?:out)? (?:exceeded|reached)|in the queue too long|"
    r"could not be delivered for (?:\d{1,4}|more than)",
    re.IGNORECASE,
)
_SENDER_MENTION = re.compile(
    r"(?:mail\s+from|envelope-from|return-path|x-postfix-sender|original-sender|sender"
    r"|verification failed for)[ \t]*+[:=]?[ \t]*+(?:rfc822;[ \t]*+)?"
    r"<?([^\s<>@]{1,64}@[^\s<>]{1,255}?)>?(?=[\s>;,]|$)",
    re.IGNORECASE,
)
_QUOTED_FROM = re.compile(
    r"^[ \t>]*+(?:from|reply-to|sender|return-path)[ \t]*+:"
    r"[^\n@]*?<?([^\s<>@:]{1,64}@[^\s<>]{1,255}?)>?[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
_HELP_MENTION = re.compile(
    # Where to ask for help ("For further assistance, please contact <support@...>", "send
    # mail to <postmaster@...>"): an address of the reporting side, never a recipient.
    r"(?:please\s{1,4}(?:contact|write\s{1,4}to|e-?mail|send\s{1,4}(?:\w{1,20}\s{1,4}){0,3}to)|"
    r"for\s{1,4}(?:further\s{1,4}|more\s{1,4})?(?:assistance|help|information|questions)"
    r"[^\n@<]{0,60}?(?:contact|write\s{1,4}to|e-?mail|to))"
    r"[^\n@<]{0,30}?<?([^\s<>@]{1,64}@[^\s<>@]{1,255})",
    re.IGNORECASE,
)
_MESSAGE_IDS = re.compile(
    r"^[ \t>]*(?:message-id|in-reply-to|references)[ \t]*:[^\n]*?<([^<>\s]+@[^<>\s]+)>",
    re.IGNORECASE | re.MULTILINE,
)
_DELAYED = re.compile(
    r"delivery (?:to the following recipients? )?(?:has been|is) delayed|"
    r"will (?:continue to )?(?:be )?retr(?:y|ied)|still (?:being )?(?:trying|retrying)|"
    r"this is a temporary (?:error|failure)|has not yet been delivered|"
    r"delivery attempts will continue",
    re.IGNORECASE,
)


_EXPANSION = re.compile(
    # Postfix "(expanded from <a@y>)", sendmail "(expanded from: <a@y>)", Exim "(generated from
    # a@y)" and "(ultimately generated from a@y)", folded anywhere.
    r"\((?:ultimately\s{1,20})?(?:expanded|generated)\s{1,20}from:?\s{0,20}"
    r"<?([^\s<>()@,;]{1,64}@[^\s<>()@,;]{1,255})>?\s{0,20}\)",
    re.IGNORECASE,
)


_GENERATED_BY = re.compile(
    # Exim's pipe and file deliveries: "pipe to |/usr/bin/procmail" then, on its own line,
    # "generated by a@y" (no parentheses).
    r"^[ \t]{1,20}generated[ \t]{1,20}by[ \t]{1,20}"
    r"<?([^\s<>()@,;]{1,64}@[^\s<>()@,;]{1,255})>?[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)


def _expansions(notice: str) -> list[tuple[int, str]]:
    """(position, address) of each address a notice says a recipient was forwarded from."""
    found = itertools.chain(_EXPANSION.finditer(notice), _GENERATED_BY.finditer(notice))
    pairs = [
        (m.start(), _address(m.group(1)))
        for m in itertools.islice(found, 2 * MAX_RECIPIENTS)
        if _address(m.group(1))
    ]
    return sorted(pairs)[:MAX_RECIPIENTS]


def _inline_original(scan: _Scan) -> Message | None:
    """The original's headers when the notice quotes them inline (qmail, Exim, ...)."""
    for part, ctype in zip(scan.parts, scan.types, strict=True):
        if ctype != "text/plain" or part.is_multipart():
            continue
        text = scan.text(part)
        # The earliest header block: the original's From and To may come before its Received.
        starts = [
            m.start() for m in (_HEADER_BLOCK.search(text), _QUOTED_HEADERS.search(text)) if m
        ]
        if starts:
            return email.message_from_string(text[min(starts) :], policy=email.policy.compat32)
    return None


def _mta_of(message: Message) -> str:
    sender = _address(str(message.get("From", "")))
    return sender.rpartition("@")[2]


# -- Amazon SES notifications (JSON, often delivered by SNS as an e-mail) ----------------------


def _ses_notification(message: Message) -> dict[str, Any] | None:
    """The SES event in an SNS e-mail notification (or a bare SES JSON body), if it is one."""
    if message.is_multipart() or message.get_content_maintype() != "text":
        return None
    body = _text(message).strip()
    if not body.startswith("{"):
        return None
    try:
        data, _ = json.JSONDecoder(strict=False).raw_decode(body)  # SNS adds a footer
        if isinstance(data, dict) and isinstance(data.get("Message"), str):
            data = json.loads(data["Message"], strict=False)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    kind = data.get("notificationType") or data.get("eventType")
    return data if kind in ("Bounce", "Complaint", "Delivery", "DeliveryDelay") else None


def _ses(event: dict[str, Any], rules: Rules) -> Iterator[BounceReport]:
    """SES's JSON as reports whose facts are those the SES adapter reads from SNS.

    Both are judged by :mod:`sendguard._bounces.verdict` alike: the provider's permanent flag
    (``bounceType``) decides permanence, the ``Suppressed`` subtypes are SES's own verdict
    (``suppressed``), a Transient bounce is a final soft failure, and a ``DeliveryDelay`` a
    delay (nothing, unless it names a refusal of the sender).
    """
    kind = str(event.get("notificationType") or event.get("eventType"))
    mail = event.get("mail") if isinstance(event.get("mail"), dict) else {}
    message_id = str(mail.get("messageId", "")) if isinstance(mail, dict) else ""
    sender = _address(str(mail.get("source", ""))) if isinstance(mail, dict) else ""
    if kind == "Complaint":
        complaint = event.get("complaint") or {}
        kind_of = str(complaint.get("complaintFeedbackType", "abuse"))
        for item in complaint.get("complainedRecipients", []) or []:
            yield BounceReport(
                recipient=_address(str(item.get("emailAddress", ""))),
                action="complaint",
                status="",
                reply_code=None,
                diagnostic=str(complaint.get("userAgent", "")),
                reason="feedback",
                hard=False,
                original_message_id=message_id,
                original_sender=sender,
                feedback_type=kind_of,
                classification=_FEEDBACK,
            )
        return
    if kind == "Delivery":
        delivery = event.get("delivery") or {}
        response = str(delivery.get("smtpResponse", ""))
        for recipient in delivery.get("recipients", []) or []:
            found = classify(response, rules=rules)
            yield replace(
                _report(
                    _address(str(recipient)),
                    "delivered",
                    found,
                    response,
                    found.enhanced_code or "2.0.0",
                    remote_mta=str(delivery.get("remoteMtaIp", "")),
                    reporting_mta=str(delivery.get("reportingMTA", "")),
                    message_id=message_id,
                ),
                original_sender=sender,
            )
        return
    bounce = event.get("bounce") or event.get("deliveryDelay") or {}
    final = kind == "Bounce"
    permanent = final and str(bounce.get("bounceType", "")) == "Permanent"
    listed = bounce.get("bounceSubType") in ("Suppressed", "OnAccountSuppressionList")
    recipients = bounce.get("bouncedRecipients") or bounce.get("delayedRecipients") or []
    for item in recipients:
        diagnostic = _after_type(str(item.get("diagnosticCode", "")))
        status = str(item.get("status", "")) or None
        found = event_classification(
            "bounced" if final else "deferred",
            diagnostic,
            permanent=permanent,
            verdict="suppressed" if final and listed else None,
            rules=rules,
            provider="ses",
        )
        yield replace(
            _report(
                _address(str(item.get("emailAddress", ""))),
                "failed" if final else "delayed",
                found,
                diagnostic,
                status,
                reporting_mta=str(bounce.get("reportingMTA", "")).split(";")[-1].strip(),
                message_id=message_id,
            ),
            original_sender=sender,
        )


def _verdict(reason: str, action: Action, rule: str, text: str) -> Classification:
    """A classification a bounce's type decides, not an SMTP reply."""
    return Classification(reason, action, False, None, None, rule, text)


_FEEDBACK = _verdict("feedback", Action.SUPPRESS, "complaint (feedback report)", "")


# -- the report ---------------------------------------------------------------------------------


def _report(
    recipient: str,
    action: BounceAction,
    found: Classification,
    diagnostic: str,
    status: str | None,
    *,
    remote_mta: str = "",
    reporting_mta: str = "",
    original: Message | None = None,
    per_message: Message | None = None,
    message_id: str = "",
    original_recipient: str = "",
    timed_out: bool = False,
) -> BounceReport:
    temporary = action == "delayed"
    if found.reason == "delivered" and action != "delivered":
        # A 2xx read from a failure (a transcript's "250 Ok", a number that was no reply):
        # the failure's cause is unknown, and it is no delivery.
        found = replace(
            found,
            reason="onhold",
            action=action_for("onhold", permanent=action == "failed"),
            permanent=action == "failed",
            reply_code=None,
            enhanced_code=None,
            rule=_NO_RULE,
        )
    if temporary and found.rule == _NO_RULE:
        # A delay notice that gives no cause: the message is still in a queue (Sisimai's
        # "expired"), which is never a reason to suppress.
        found = replace(found, reason="expired", action=Action.RETRY, rule="a delay notice")
    # A cause that timed out was temporary; "expired" is the timing out itself, final.
    transient = temporary or (timed_out and found.reason != "expired")
    status = _status(status, found, temporary=transient)
    if action == "delivered":
        found = replace(
            found, reason="delivered", action=Action.NONE, permanent=False, rule="DSN delivered"
        )
    hard = hard_failure(action, found, status)
    if original is not None and not message_id:
        message_id = str(original.get("Message-ID", "")).strip()
    forwarded_from = original_recipient if _key(original_recipient) != _key(recipient) else ""
    sender = ""
    for source, name in (
        (per_message, "X-Postfix-Sender"),
        (per_message, "X-Original-Sender"),
        (original, "Return-Path"),
        (original, "From"),
    ):
        if source is not None and source.get(name):
            sender = _address(str(source.get(name)))
            if sender:
                break
    return BounceReport(
        recipient=recipient,
        action=action,
        status=status,
        reply_code=found.reply_code,
        diagnostic=diagnostic,
        reason=found.reason,
        hard=hard,
        remote_mta=remote_mta,
        reporting_mta=reporting_mta,
        original_recipient=forwarded_from,
        original_message_id=message_id,
        original_sender=sender,
        classification=found,
    )


def _status(status: str | None, found: Classification, *, temporary: bool) -> str:
    """The report's status: the DSN's Status, refined by the diagnostic, else a pseudo code.

    A DSN's Status field is the reporting MTA's verdict on the recipient and wins; the
    Diagnostic-Code is the remote reply it read, its detail.  Only a Status that names no
    detail (``5.0.0``) takes the diagnostic's code, and only of its own class: "Status: 5.0.0"
    over "450 4.2.0 ..." is still a permanent failure.
    """
    enhanced = found.enhanced_code
    if enhanced and enhanced[0] == "2" and found.reason != "delivered":
        enhanced = None  # a transcript's "250 2.1.0 Ok", not the failure's code
    if status and not status.endswith(".0.0"):
        return status
    if enhanced and not enhanced.endswith(".0.0") and (not status or status[0] == enhanced[0]):
        return enhanced
    if status:
        return status
    first = "4" if temporary or (found.reply_code or 500) // 100 == 4 else "5"
    if found.reason == "delivered":
        return status or "2.0.0"
    pseudo = _PSEUDO.get(found.reason)
    if pseudo is None:
        return status or found.enhanced_code or f"{first}.0.0"
    return f"{first}.0.{pseudo}"

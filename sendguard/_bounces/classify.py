"""Classifying a rejection: which reason, and what the guard should do about it.

The rules are data: a list of :class:`Rule` checked in order, first match wins.  The default
table (:data:`DEFAULT_RULES`) has three layers:

1. phrases in the reply text (``"blocked using zen.spamhaus.org"``, ``"mailbox full"``), most
   specific first, because the words say more than the codes: many servers answer
   ``550 5.1.1`` for a rate limit, or ``550 5.7.1`` for an unknown user;
2. enhanced status codes (RFC 3463, RFC 7372, and provider codes such as Microsoft's 5.7.509
   and 5.7.708), for replies whose words match nothing;
3. bare reply codes, last.

A :class:`Rules` object extends the table (``Rules(extra=[...])``, checked before the defaults)
or replaces it.  Reasons use Sisimai's v5 vocabulary.  The action follows from the reason and
whether the failure is permanent:

* ``SUPPRESS``: a permanent fault of the address or its domain (userunknown, hostunknown,
  hasmoved, notaccept, suppressed), and complaints (feedback);
* ``PAUSE_SENDER``: the *sender* was refused (blocked, badreputation, authfailure, requireptr,
  ratelimited, rejected, norelaying, securityerror, failedstarttls).  Never a suppression: the
  address may be perfectly good.  A temporary (4xx) refusal pauses only when it says so
  outright (blocked, badreputation, ratelimited); other 4xx ones, greylisting included, are
  retried;
* ``FAIL``: this message was refused (content, size, virus, policy, filter) or a permanent
  failure that says nothing certain about the address;
* ``RETRY``: a temporary failure;
* ``NONE``: nothing failed (delivered, an auto-reply).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from importlib import resources
from pathlib import Path

from sendguard._errors import ConfigurationError

__all__ = [
    "DEFAULT_RULES",
    "PROVIDER_RULES",
    "REASONS",
    "SOFT_REASONS",
    "Action",
    "Classification",
    "Rule",
    "Rules",
    "classify",
    "load_rules",
]

REASONS = frozenset(
    [
        "userunknown",
        "hostunknown",
        "hasmoved",
        "notaccept",
        "filtered",
        "mailboxfull",
        "suspend",
        "suppressed",
        "rejected",
        "authfailure",
        "badreputation",
        "blocked",
        "spamdetected",
        "virusdetected",
        "policyviolation",
        "securityerror",
        "contenterror",
        "notcompliantrfc",
        "emailtoolarge",
        "requireptr",
        "ratelimited",
        "norelaying",
        "expired",
        "networkerror",
        "systemerror",
        "systemfull",
        "mailererror",
        "failedstarttls",
        "syntaxerror",
        "feedback",
        "vacation",
        "delivered",
        "onhold",
        "undefined",
    ]
)
"""Every reason :func:`classify` can return (Sisimai v5's vocabulary)."""

HARD_REASONS = frozenset({"userunknown", "hostunknown", "hasmoved", "notaccept", "suppressed"})
SENDER_REASONS = frozenset(
    {
        "blocked",
        "badreputation",
        "authfailure",
        "requireptr",
        "ratelimited",
        "rejected",
        "norelaying",
        "securityerror",
        "failedstarttls",
    }
)
TRANSIENT_SENDER_REASONS = frozenset({"blocked", "badreputation", "ratelimited"})
"""Sender-side reasons that pause the sender even when the refusal is temporary (4xx)."""
SOFT_REASONS = frozenset({"mailboxfull", "suspend", "expired", *HARD_REASONS})
"""Failures counted toward soft-bounce escalation when they do not suppress at once."""
_PERMANENT_BY_DEFAULT = HARD_REASONS | {
    "suspend",
    "filtered",
    "notcompliantrfc",
    "syntaxerror",
    # A refusal of the message or of the sender stays one when no code says otherwise.
    "emailtoolarge",
    "virusdetected",
    "spamdetected",
    "contenterror",
    "policyviolation",
    "rejected",
    "norelaying",
    "securityerror",
    "authfailure",
    "failedstarttls",
}


class Action(StrEnum):
    """What the guard does after a classified reply."""

    SUPPRESS = "suppress"
    RETRY = "retry"
    FAIL = "fail"
    PAUSE_SENDER = "pause_sender"
    NONE = "none"


_RULE_CODE = re.compile(r"[245x]\.\d{1,3}\.\d{1,3}\Z")


@dataclass(frozen=True, slots=True)
class Rule:
    """One line of the table: when every given condition holds, the reply has *reason*.

    ``pattern`` is a regular expression searched (case-insensitively) in the reply text with
    runs of white space folded to one space; ``codes`` are enhanced status codes, matched on
    the subject and detail (``"x.1.1"`` matches 4.1.1 and 5.1.1, ``"5.7.509"`` only itself);
    ``reply_codes`` are SMTP reply codes.  A ``definite`` rule's words leave no doubt whatever
    the SMTP stage: an "unknown user" after DATA is usually a filter's answer, but Yahoo's
    "This user doesn't have a yahoo.com account" is not.  A rule that ``pauses=False`` gives
    a sender-side reason without pausing the sender: its refusal is about one message or one
    recipient (Gmail's "receiving mail at a rate" for one mailbox, a per-message recipient
    limit, a bare security status code), so the message is retried or fails.
    """

    reason: str
    pattern: str | None = None
    codes: tuple[str, ...] = ()
    reply_codes: tuple[int, ...] = ()
    name: str = ""
    definite: bool = False
    pauses: bool = True
    _regex: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.reason, str) or self.reason not in REASONS:
            raise ConfigurationError(
                f"Rule: unknown reason {self.reason!r}; use one of {sorted(REASONS)}"
            )
        for flag in ("definite", "pauses"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigurationError(
                    f"Rule({flag}=...) must be True or False, not {getattr(self, flag)!r}"
                )
        if self.pattern is None and not self.codes and not self.reply_codes:
            raise ConfigurationError(
                "Rule needs a pattern, codes or reply_codes: give at least one"
            )
        for option in ("codes", "reply_codes"):
            given = getattr(self, option)
            if isinstance(given, str | int) or not isinstance(given, Iterable):
                raise ConfigurationError(
                    f"Rule({option}=...) must be a tuple, e.g. ('5.1.1',) or (550,), not {given!r}"
                )
            object.__setattr__(self, option, tuple(given))
        if not all(isinstance(c, str) and _RULE_CODE.match(c) for c in self.codes):
            raise ConfigurationError(
                f"Rule(codes=...) must be a tuple of enhanced status codes such as "
                f"('5.1.1',) or ('x.1.1',), not {self.codes!r}"
            )
        if not all(
            isinstance(c, int) and not isinstance(c, bool) and 200 <= c <= 599
            for c in self.reply_codes
        ):
            raise ConfigurationError(
                f"Rule(reply_codes=...) must be SMTP reply codes such as (550,), "
                f"not {self.reply_codes!r}"
            )
        if self.pattern is not None:
            if not isinstance(self.pattern, str):
                raise ConfigurationError(
                    f"Rule(pattern=...) must be a regular expression as a string, "
                    f"not {self.pattern!r}"
                )
            try:
                regex = re.compile(self.pattern, re.IGNORECASE)
            except re.error as exc:
                raise ConfigurationError(
                    f"Rule(pattern=...) is not a regular expression: {self.pattern!r}: {exc}"
                ) from exc
            object.__setattr__(self, "_regex", regex)
        if not self.name:
            what = self.pattern or ",".join(self.codes) or ",".join(map(str, self.reply_codes))
            object.__setattr__(self, "name", f"{self.reason}: {what}")

    def matches(self, text: str, enhanced: str | None, reply_code: int | None) -> bool:
        """Whether this rule applies to a reply."""
        if self.reply_codes and reply_code not in self.reply_codes:
            return False
        if self.codes and (
            enhanced is None or not any(_code_matches(c, enhanced) for c in self.codes)
        ):
            return False
        return self._regex is None or self._regex.search(text) is not None


def _code_matches(rule_code: str, enhanced: str) -> bool:
    if rule_code.startswith("x."):
        return enhanced[1:] == rule_code[1:]
    return enhanced == rule_code


@dataclass(frozen=True, slots=True)
class Classification:
    """What a reply means: ``reason``, ``action``, and the rule that decided it (``rule``)."""

    reason: str
    action: Action
    permanent: bool
    reply_code: int | None
    enhanced_code: str | None
    rule: str
    text: str = ""

    @property
    def soft(self) -> bool:
        """A failure that counts toward soft-bounce escalation."""
        return self.reason in SOFT_REASONS and self.action in (Action.RETRY, Action.FAIL)


Phrase = str | tuple[str, str] | tuple[str, str, str]
"""A pattern, or ``(first, then[, between])``: *first*, later *then*, only *between* between."""


def _then(first: str, then: str, between: str = ".") -> str:
    """*first* followed later by *then*, as a pattern linear in the text.

    ``first.*then`` is quadratic: searched in a text where *first* recurs and *then* never
    comes, every occurrence scans to the end.  Here the gap may not contain *first* again, so
    each stretch of text is scanned from one occurrence only; it matches the same texts (the
    last *first* before *then* starts the match).
    """
    return rf"(?:{first})(?:(?!{first}){between})*?(?:{then})"


def _phrases(reason: str, *phrases: Phrase) -> list[Rule]:
    rules = []
    for phrase in phrases:
        if isinstance(phrase, str):
            rules.append(Rule(reason, phrase))
        else:
            first, then, *between = phrase
            shown = f"{first}{'.' if not between else between[0]}*{then}"
            rules.append(Rule(reason, _then(first, then, *between), name=f"{reason}: {shown}"))
    return rules


_RULE_FIELDS = frozenset({"reason", "pattern", "then", "between", "codes", "reply_codes"})
_RULE_FLAGS = frozenset({"definite", "pauses"})
_RULE_NOTES = frozenset({"name", "provider", "source", "example", "note"})


def load_rules(path: str | os.PathLike[str]) -> list[Rule]:
    """The rules of a TOML file of ``[[rule]]`` tables, in the file's order.

    Each table has :class:`Rule`'s fields (``reason``, ``pattern``, ``codes``,
    ``reply_codes``, ``definite``, ``name``), optionally ``then`` (a pattern that must follow
    *pattern* later in the text, matched in time linear in the text) and ``between`` (what
    may stand between them, ``"."`` by default), and notes that are kept out of the match
    (``provider``, ``source``, ``example``, ``note``).  sendguard's own provider table
    (``sendguard/_bounces/providers.toml``) is such a file.  Anything else is a
    :class:`~sendguard.ConfigurationError` naming the file and the table.
    """
    where = Path(path)
    try:
        text = where.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"rules file {where}: cannot be read: {exc}") from exc
    return _rules_from_toml(text, str(where))


def _rules_from_toml(text: str, where: str) -> list[Rule]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"rules file {where}: not TOML: {exc}") from exc
    tables = data.get("rule", [])
    if set(data) - {"rule"} or not isinstance(tables, list):
        raise ConfigurationError(
            f"rules file {where}: only [[rule]] tables are read, found {sorted(set(data))}"
        )
    return [_rule_from_table(table, f"{where}, rule {n}") for n, table in enumerate(tables, 1)]


def _rule_from_table(table: dict[str, object], where: str) -> Rule:
    unknown = set(table) - _RULE_FIELDS - _RULE_FLAGS - _RULE_NOTES
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown key(s) {sorted(unknown)}; a rule has "
            f"{sorted(_RULE_FIELDS | _RULE_FLAGS | _RULE_NOTES)}"
        )
    pattern, then, between = table.get("pattern"), table.get("then"), table.get("between", ".")
    for key, value in (("pattern", pattern), ("then", then), ("between", between)):
        if value is not None and not isinstance(value, str):
            raise ConfigurationError(f"{where}: {key} must be a string, not {value!r}")
    if then is not None and pattern is None:
        raise ConfigurationError(f"{where}: 'then' needs a 'pattern' before it")
    definite, pauses = table.get("definite", False), table.get("pauses", True)
    for key, flag in (("definite", definite), ("pauses", pauses)):
        if not isinstance(flag, bool):
            raise ConfigurationError(f"{where}: {key} must be true or false, not {flag!r}")
    codes, reply_codes = table.get("codes", ()), table.get("reply_codes", ())
    if isinstance(codes, list):
        codes = tuple(codes)
    if isinstance(reply_codes, list):
        reply_codes = tuple(reply_codes)
    shown = pattern if then is None else f"{pattern}...{then}"
    if shown is None and isinstance(codes, tuple):
        shown = " ".join(str(code) for code in codes)
    provider = table.get("provider")
    name = table.get("name") or (f"{table.get('reason')}: {provider}: {shown}" if provider else "")
    regex = None if pattern is None else str(pattern)
    if regex is not None and then is not None:
        regex = _then(regex, str(then), str(between))
    try:
        return Rule(
            table.get("reason"),  # type: ignore[arg-type]  # Rule checks it
            regex,
            codes=codes,  # type: ignore[arg-type]
            reply_codes=reply_codes,  # type: ignore[arg-type]
            name=str(name),
            definite=bool(definite),
            pauses=bool(pauses),
        )
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc}") from exc


_QUALIFIED = (
    r" (?:in|with|from|containing|that|which|of|larger|bigger|over|above|sent|encoded|using"
    r"|having|without|for (?:this|these))\b"
)
"""Words after "does not accept mail" that make it a refusal of some mail only."""

_UNAVAILABLE = Rule(
    "userunknown",
    r"mailbox (?:unavailable|not available)",
    name="userunknown: mailbox unavailable (RFC 5321's 550 text; not with a 5.7.x policy code)",
)
"""RFC 5321's text for 550, which most servers send for a mailbox that does not exist, but
which "command rejected for policy reasons" shares: evidence only without a policy code."""

# -- layer 1: phrases ---------------------------------------------------------------------------
# Order matters: sender-side and rate-limit phrases come first, since they are often sent with
# recipient codes (550 5.1.1 "... has sent to too many recipients"); then the message-level
# refusals; then the recipient's own state.
# Greylisting is a temporary answer to every new sender, not a verdict on anyone.
_GREYLISTING = Rule("onhold", r"gr[ea]y ?list", name="onhold: greylisting")
_TEXT_RULES: list[Rule] = [
    *_phrases(
        "badreputation",
        r"(?:poor|low|bad) (?:ip |domain |sender )?reputation",
        r"due to ip reputation",
        r"rate limited due to (?:ip )?reputation",
    ),
    # A mailbox holding too many messages is full, whatever "too many" says of rates.
    Rule("mailboxfull", r"too many (?:messages|mails|e-?mails) (?:on|in|stored)"),
    # A per-message recipient limit (RFC 5321's 452, status x.5.3): the rest go in another
    # transaction; neither a rate of the sender nor a reason to pause it.
    Rule("ratelimited", r"too many recipients", codes=("x.5.3",), pauses=False),
    Rule("ratelimited", r"too many recipients", reply_codes=(452,), pauses=False),
    *_phrases(
        "ratelimited",
        r"too many (?:invalid |unknown |bad |wrong )?(?:recipients|messages|connections|concurrent)",
        r"submission quota",
        r"(?:daily|hourly|per hour|per day|per minute)(?: [\w']+){0,3} limit",
        r"receive limit from (?:a |this |the |specific )?sender",
        r"exceeded (?:the )?permitted limits?",
        r"too much (?:mail|e-?mail|traffic)",
        r"(?:relay|recipient|message|send(?:ing)?) limit (?:exceeded|reached)",
        r"(?:rate|connection|frequency|sending) limit(?:ed|s)? (?:exceeded|reached)?",
        r"connection frequency limited",
        r"temporarily rate limited",
        r"exceeded (?:the )?(?:rate|sending|message) (?:limit|quota)",
        (r"try (?:again )?later", r"(?:too many|volume)"),
        r"has sent to too many recipients",
        r"(?:daily |user )*sending (?:quota|limit)",
        r"throttl",
        r"too many errors",
    ),
    *_phrases(
        "notcompliantrfc",
        r"multiple addresses in from",
        r"duplicate header",
        r"not (?:rfc|rfc ?5322|rfc ?2822) compliant",
        r"does not comply with rfc",
        r"bare (?:lf|cr|linefeed)",
        r"missing (?:a )?(?:message-id|date|from) header",
        r"must be rfc ?\d{3,4}(?: section [\d.]+)? compliant",
    ),
    *_phrases(
        "authfailure",
        r"\bdmarc\b",
        (r"\bspf\b", r"(?:fail|record|policy)"),
        (r"(?:fail|failed|failing)\b", r"\bspf\b"),
        (r"\bdkim\b", r"(?:fail|invalid|signature)"),
        r"unauthenticated (?:email|mail|sender)",
        r"sender is unauthenticated",
        r"authentication checks? failed",
        r"does not pass (?:dmarc|spf|dkim)",
        r"sender (?:domain )?(?:authentication|verification) (?:failed|required)",
    ),
    # A blocklist hit on the sender's address, HELO name or host is of the sender, whichever
    # list: before the body-blocklist names (a DBL listing of a link is the content's).
    Rule(
        "blocked",
        r"(?:sender|helo|ehlo|client|from)\b[^;]{0,80}?\bblocked using",
        name="blocked: the sender, HELO or client blocked using a list",
    ),
    # A blocklist hit on a link or domain in the body is about the content, not the sending
    # IP: before the blocklist names below, which would read it as a block of the sender.
    *_phrases(
        "spamdetected",
        r"(?:url|uri|link|domain|hostname)s? (?:found )?(?:in|within|inside) (?:the |your |this )?"
        r"(?:message|body|content|mail|e-?mail)",
        r"contains? (?:a |an |one or more )?(?:url|uri|link|domain)s? (?:that (?:is|are) )?"
        r"(?:listed|blacklisted|blocklisted|blocked)",
        r"\b(?:surbl|uribl|dbl\.spamhaus)\b",
    ),
    # "5xx <address> Rejected": the server names the recipient and refuses it, nothing else
    # (Symantec Email Security.cloud writes this for an address it does not accept).
    Rule(
        "userunknown",
        r"^\W*[45]\d\d[ -]+<?[^\s<>@]+@[^\s<>]+?>?:? rejected\W*$",
        name="userunknown: '<address> Rejected'",
    ),
    # A bare "550 Rejected" names no cause; most often a policy block of the sender.
    Rule(
        "blocked",
        r"^\W*(?:[245]\d\d[ -]+)?(?:[245]\.\d+\.\d+ )?(?:rejected|denied|refused)\W*$",
        name="blocked: a bare 'Rejected'",
    ),
    *_phrases(
        "requireptr",
        r"reverse dns",
        r"\bptr\b (?:record|lookup)",
        r"no ptr",
        r"ip name lookup failed",
        r"(?:cannot|could not|can't|unable to) (?:resolve|find) (?:your )?(?:hostname|host name)",
        r"mismatches client ip",
        (r"client host ", r" (?:has no|without) (?:reverse|rdns|ptr)"),
        r"\brdns\b",
    ),
    *_phrases(
        "blocked",
        r"blocked using",
        r"(?<!not )(?<!message )\b(?:listed|blacklisted|blocklisted|blocked) (?:at|in|on|by) ",
        r"after (?:initial connection|ehlo|helo)\b",
        r"spamhaus|spamcop|barracuda|\bsorbs\b|surbl|uribl|proofpoint|dnsbl|rbl\b",
        r"^\W*[45]\d\d[ -]+(?:[45]\.\d+\.\d+ )?blocked\b",
        r"traffic not accepted from this ip",
        r"client host (?:\[[^\]]*\] )?(?:rejected|blocked)",
        r"(?:ip|host|address|addr)(?: address)? (?:is )?(?:blacklisted|block ?listed|blocked|banned"
        r"|listed)",
        r"\bip(?: address)? (?:is |was |has been )?(?:rejected|refused|denied|not allowed)",
        r"\binvalid ip\b",
        r"blocked from sending",
        r"not (?:in|on) (?:the |our |any )?(?:white|allow) ?list",
        r"no smtp service",
        r"\b(?:bad|invalid) (?:helo|ehlo)\b",
        r"\b(?:helo|ehlo)(?:/ehlo)?(?: command| argument| name| hostname)?(?: is)? (?:rejected"
        r"|invalid|not valid|refused)",
        r"blocked for spam",
        r"refused to talk to me",
        r"(?:messages|mail|connections?) from \[?[\d.:a-f]+\]? (?:weren't|were not|are not|is not)",
        r"on our block ?list",
        r"\bspam ?lists?\b",
        r"not (?:allowed|permitted|authori[sz]ed) to connect",
        r"access to (?:submit|send|deliver) (?:messages|mail|e-?mail)",
        r"\bdeny ?ip\b",
        r"\bservice refused?\b",
        r"access denied\.{3}",
        r"open relay",
        r"invalid ip for sending",
        r"(?:your|sending|client) ip (?:address )?(?:has been |is )?(?:blocked|rejected|not allowed)",
        r"not allowed to send from",
        r"host network not allowed",
        r"block-send-?er",
    ),
    *_phrases(
        "norelaying",
        r"relay(?:ing)?(?: to <?[^\s<>]{1,254}>?)? (?:access )?(?:denied|not permitted|prohibited"
        r"|not allowed|disallowed)",
        r"not a gateway",
        r"local user only",
        r"no relaying",
        r"unable to relay",
        r"unauthori[sz]ed relay",
        r"\bas a relay\b",
        r"email address is not verified",
        r"we do not relay",
    ),
    *_phrases(
        "failedstarttls",
        r"starttls",
        r"does not support tls",
        r"\btls (?:is )?required",
        r"must issue a starttls",
        r"(?:requires|required) (?:a )?secure connection",
    ),
    *_phrases(
        "securityerror",
        r"smtp authentication",
        r"\b(?:smtp )?auth(?:entication)? (?:failed|required)",
        r"authentication required",
        r"auth(?:entication)?required",
        r"delivery not authorized",
        r"not permitted to relay",
        r"insecure",
        r"credentials",
        r"mechanism is too weak",
        r"not authori[sz]ed to (?:perform|send|use)",
    ),
    # A refusal of the envelope sender (MAIL FROM) says nothing of the recipient, whatever
    # code comes with it (Exim's "550-Verification failed for <sender> ... 550 Sender verify
    # failed", Postfix's "Sender address rejected: Domain not found"): before every phrase
    # about the recipient or the message, so that none of them (nor a bare 550) in the same
    # reply can read as a dead address; after the other sender-side ones, which say more.
    *_phrases(
        "rejected",
        r"(?<![\w@.-])sender (?:verify|verification|callout|call-out|address verification)\b",
        r"(?:could not|cannot|unable to) (?:verify|check) (?:the )?(?:envelope )?sender",
        r"verification (?:failed|failure) for (?:the )?(?:envelope )?sender",
        r"(?<![\w@.-])(?:sender|envelope[- ]from|envelope sender|mail from|return[- ]path)"
        r"(?: address)?:? (?:rejected|refused|denied|invalid|unknown|unverified|not verified"
        r"|not allowed|verification failed|domain (?:not found|does not exist|unknown))",
        r"(?<![\w@.-])(?:sender|envelope sender)(?: address)?(?:'s)? domain (?:not found"
        r"|does not exist|doesn't exist|unknown|must exist|has no mx|not resolvable)",
        r"unroute?able sender",
        r"(?:rejected|refused|denied|invalid|bad|unknown) (?:envelope )?(?:sender|mail from)\b",
        r"(?:sender|mail from) (?:address )?(?:must be|is not) (?:a )?fully[- ]qualified",
    ),
    *_phrases(
        "virusdetected",
        r"\bvirus",
        r"malware",
        r"infected",
    ),
    *_phrases(
        "spamdetected",
        r"\bspam\b",
        r"\bube\b",
        r"unsolicited",
        r"message content rejected",
        r"content (?:rejected|filter)",
        r"junk mail",
        r"classified as bulk",
    ),
    *_phrases(
        "emailtoolarge",
        r"(?:message|mail|email)(?: size)? (?:is )?(?:too (?:big|large)|exceeds)",
        r"message length exceeds",
        r"size (?:exceeds|limit)",
        r"exceeds (?:the )?(?:fixed |maximum |size )",
        r"recipsizelimit",
        r"too large for this recipient",
    ),
    *_phrases(
        "contenterror",
        r"headers? too (?:large|long)",
        r"(?:illegal|invalid|bad) (?:mime|attachment|header|content)",
    ),
    *_phrases(
        "policyviolation",
        r"polic(?:y|ies) (?:reason|violation|rejection)",
        r"for policy reasons",
        r"administrative prohibition",
        r"denied by policy",
        r"local policy",
        r"message not allowed",
        r"content presents a potential",
        r"header error",
    ),
    *_phrases(
        "mailboxfull",
        r"mailbox (?:is )?(?:full|over ?quota|exceeds)",
        r"quota(?: limit)?(?: is)? (?:exceed|full)",
        r"over ?quota",
        r"(?:inbox|mailbox|mailfolder|mail folder) is (?:full|out of storage)",
        r"out of storage space",
        r"user'?s? (?:mailbox|mailfolder) (?:is full|exceeds)",
        r"not enough (?:disk )?space",
        r"(?:mailbox |disk )?space (?:is )?not enough",
        r"mailbox size limit",
        r"postfach (?:ist )?(?:voll|(?:ü|ue)berf(?:ü|ue)llt)|bo[iî]te(?: aux lettres| mail)? (?:est )?pleine"
        r"|buz[oó]n (?:est[aá] )?lleno|casella(?: di posta)? (?:è )?piena|caixa(?: postal)? (?:est[aá] )?cheia"
        r"|ящик переполнен",
        r"insufficient (?:user )?(?:storage|quota)",
    ),
    *_phrases(
        "systemfull",
        r"insufficient (?:system )?(?:disk|storage)(?: space)?",
        r"system (?:storage|disk) (?:full|exceeded)",
        r"mail system full",
    ),
    # An account disabled, closed or removed for good is a dead address too ("definite": it
    # suppresses when permanent); one frozen, locked or suspended may come back (soft).
    *[
        replace(rule, definite=True)
        for rule in _phrases(
            "suspend",
            r"(?:account|mailbox|user|address)(?: has been| is| was)? (?:now )?(?:disabled"
            r"|deactivated|discontinued|inactive|closed|terminated|removed|deleted|expired"
            r"|not activated)",
            r"address rejected: inactive\b",
            r"(?:disabled|deactivated|inactive|closed) (?:recipient|account|mailbox|user)",
            r"(?:account|mailbox|user)\W{1,3}inactive",
            r"(?:is now|has been) disabled",
            r"mail receiving disabled",
        )
    ],
    *_phrases(
        "suspend",
        r"(?:account|mailbox|user|address)(?: has been| is)? (?:suspended|frozen|locked|blocked)",
        (r"(?:account|compte)", r" (?:est )?bloque", r"[^.]"),
        r"mailbox is frozen",
        r"account (?:has been )?(?:disabled|discontinued|expired|terminated)",
        r"not (?:an )?active (?:user|mailbox|account)",
    ),
    *_phrases(
        "hasmoved",
        r"no longer (?:on server|available|valid|with us|at this)",
        r"has moved",
        r"not our customer",
        r"user (?:has )?moved",
        r"(?:address|mailbox|account|user) (?:no longer exists|is no longer)",
        r"no longer accepts (?:e-?mail|mail|messages)",
        r"aucune adresse de transfert|adresse (?:[ée]lectronique |e-?mail )?(?:du destinataire )?a chang[ée]",
    ),
    # Taking no mail at all proves the address dead; refusing mail "in", "with" or "from"
    # something refuses this message (character sets, attachments, senders).
    *_phrases(
        "notaccept",
        rf"(?:not|doesn't|does not) (?:receive|accept) (?:e-?mail|mail|messages)(?!{_QUALIFIED})",
        r"no mx (?:found|record)",
        r"null mx",
        r"couldn't find a mail exchanger",
        r"system not accepting network messages",
    ),
    *_phrases(
        "rejected",
        r"sender (?:address )?(?:rejected|refused|denied|blocked|not allowed)",
        r"domain of sender address",
        r"from:? domain is invalid",
        r"(?:sender|from:?) (?:domain|address) (?:does not|doesn't) exist",
        r"unroutable sender",
        r"purported responsible address",
        r"not a registered gateway user",
        r"(?:invalid|unknown|bad) sender",
        r"(?:fake|forged|spoofed|null|empty) sender",
        # The sender's domain is not one this server sends or relays for.
        r"(?:sender|from)(?: e-?mail| address)? (?:is )?not (?:in|from|of) (?:my|our|this|the local)"
        r" domain",
        # The envelope sender and the header From disagree: a spoofing rule, about the sender.
        r"mail from (?:is )?mismatch(?:ed)? with (?:the )?(?:message )?header",
        r"sender was rejected",
    ),
    *_phrases(
        "hostunknown",
        r"host or domain name not found",
        r"dns lookup failure: host \S+ not found",
    ),
    *_phrases(
        "networkerror",
        r"name service error",
        r"(?:host ?name|dns|mx) lookup fail",
        r"\bdns error\b",
        r"not found, try again",
        r"malformed or unexpected name server reply",
        r"(?:hop count|too many hops|routing loop|mail loop|loops back to myself)",
    ),
    *_phrases(
        "hostunknown",
        r"host(?: or domain name)? (?:unknown|not found)",
        r"(?:no such|unknown|invalid|bad|illegal) (?:host|domain)",
        r"domain (?:does not|doesn't) exist",
        r"domain (?:name )?not found",
        (r"(?:host|domain)", r" (?:does not|doesn't) exist", r"\S"),
        r"couldn't find any host named",
        r"unrouteable (?:mail )?domain",
        r"bad destination system address",
        r"domain is not reachable",
        r"nxdomain",
        r"host or domain name not found",
        r"(?:account or )?domain may not exist",
        r"illegal host/domain",
        r"(?<![\w.-])[a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63})+ (?:does not|doesn't) exist",
    ),
    # "Recipient address rejected: Access denied" is a recipient access rule: the address is
    # refused, not proven dead (Microsoft's 5.4.1 one, which is, is in the provider table).
    *_phrases(
        "filtered",
        r"recipient address rejected: access denied",
        r"refused due to recipient preferences",
        r"message filtered",
        r"only accepting mail from specific",
        r"(?:rejected|blocked) by (?:the )?recipient(?! domain)",
    ),
    # Providers that refuse unknown users after DATA, in words that cannot mean a filter.
    *_phrases(
        "userunknown",
        (
            r"(?:user|mailbox|recipient|address|account|addressee)",
            r" (?:is )?(?:unknown|not found|not exist|does not exist|doesn't exist|not listed"
            r"|invalid|unrecognized)",
            r"\S",
        ),
        r"(?:unknown|invalid|no such|non-?existent|illegal|bad) (?:local )?(?:user|mailbox|recipient|address|account|addressee)",
        # The address named between the noun and the verdict: "User (x@example.com) unknown".
        r"(?:user|mailbox|recipient|address|account) ?[(<\[] ?[^\s()<>\[\]]{1,254} ?[)>\]]:? (?:is )?"
        r"(?:unknown|not found|does not exist|doesn't exist|not exist|invalid)",
        r"not a member of (?:this |the )?domain",
        r"\bwrong (?:recipient|address|user|mailbox)(?:es|s)?\b",
        r"user not known",
        r"(?:don't|doesn't|does no|do not) exists\b",
        r"not (?:a )?user of this (?:server|system|domain|host)",
        r"(?:does not|doesn't) have an? (?:\S+ )?(?:account|mailbox)",
        # The same in other languages (German, French, Spanish, Italian, Portuguese, Dutch,
        # Polish, Russian).
        r"(?:benutzer|empf(?:ä|ae)nger|postfach|adresse)\w{0,4} (?:ist |wurde )?(?:unbekannt|existiert nicht"
        r"|nicht gefunden|nicht vorhanden)|unbekannte[rs]? (?:benutzer|empf(?:ä|ae)nger)",
        r"(?:utilisateur|destinataire|adresse|bo[iî]te|compte)(?: \S+){0,3} (?:est )?(?:inconnue?"
        r"|inexistante?|n'existe pas)",
        r"(?:usuario|destinatario|buz[oó]n|cuenta|direcci[oó]n)(?: \S+){0,2} (?:desconocid[oa]"
        r"|no existe|inexistente)",
        r"(?:utente|destinatario|casella|indirizzo)(?: \S+){0,2} (?:sconosciut[oa]|non esiste"
        r"|inesistente)",
        r"(?:usu[aá]rio|destinat[aá]rio|caixa|conta|endere[cç]o)(?: \S+){0,2} (?:desconhecid[oa]"
        r"|n[aã]o existe|inexistente)",
        r"(?:gebruiker|ontvanger|adres|mailbox)(?: \S+){0,2} (?:onbekend|bestaat niet)|onbekende"
        r" (?:gebruiker|ontvanger)",
        r"(?:u[zż]ytkownik|adres|skrzynka|konto)(?: \S+){0,2} (?:nie istnieje|nieznany)"
        r"|nieznany u[zż]ytkownik",
        r"(?:пользовател|адрес|ящик|получател)\w{0,4}(?: \S+){0,2} не (?:существует|найден)"
        r"|нет такого (?:пользователя|адреса|ящика)",
        r"no mailbox here",
        r"mailbox name not allowed",
        r"does not have an account here",
        r"unrouteable address",
        r"no valid recipients",
        r"user not (?:exist|local|found)",
        r"recip(?:ient)?notfound",
        r"recipnotfound",
        r"not listed in (?:domino directory|public name)",
        r"address (?:couldn't|could not) be found",
        r"invalid final delivery userid",
        r"recipient address rejected: (?:unknown|user unknown|undeliverable|invalid)",
        r"unknown local[- ]part",
        r"invalid recipient",
        r"unknown or illegal",
        r"no such (?:user|person|mailbox)",
        r"mailbox not found",
        r"not a valid (?:mailbox|recipient|user)",
        r"marked as invalid",
        r"not in (?:the |our )?(?:recipient|user|valid recipient)s? list",
        r"mail-box not found",
    ),
    _UNAVAILABLE,
    *_phrases(
        "expired",
        r"(?:message|envelope|delivery) (?:has )?expired",
        r"retry (?:timeout|time) exceeded",
        r"(?:could not|unable to) (?:be )?deliver(?:ed)?(?: this message)? (?:for|in|after) ",
        (r"delivery (?:failed|attempts?) ", r"attempts?"),
        r"delivery failed \d+ attempts",
        r"giving up",
        r"in the queue too long",
        r"has been delayed",
        r"will be (?:retried|deleted from queue)",
        r"did not accept our requests to connect",
        r"connection timed out",
        r"could not be delivered for",
        r"unable to connect successfully",
    ),
    *_phrases(
        "networkerror",
        r"network error",
        r"(?:unable|failed) to (?:establish|open) (?:an )?smtp connection",
        r"host not reachable",
        r"connection (?:refused|reset)",
    ),
    *_phrases(
        "mailererror",
        r"pipe to \|",
        r"operating system error",
        r"mailer error",
        r"command (?:died|failed)",
    ),
    *_phrases(
        "systemerror",
        r"system error",
        r"internal (?:server |system )?error",
        r"queue file write error",
        r"service (?:currently )?unavailable",
        r"transaction failed",
        r"could not load",
        r"local (?:error|problem)",
        r"duplicated message-id",
        r"temporary local problem",
    ),
    # A delay notice's own words: only when nothing more specific says why.
    *_phrases("expired", r"(?:still|remains?) undelivered after", r"will keep trying"),
    *_phrases(
        "syntaxerror",
        r"syntax error",
        r"improper sequence",
        r"bad sequence of commands",
        r"command (?:parameter )?not (?:implemented|recognized)",
        r"malformed address",
    ),
    *_phrases("vacation", r"out of (?:the )?office", r"auto-?reply", r"on vacation"),
]

# -- layer 2: enhanced status codes (RFC 3463, RFC 7372, providers) -----------------------------
_CODE_TABLE: list[tuple[str, tuple[str, ...]]] = [
    (
        "authfailure",
        (
            "x.7.20",
            "x.7.21",
            "x.7.22",
            "x.7.23",
            "x.7.24",
            "x.7.26",
            "x.7.29",
        ),
    ),
    ("ratelimited", ("x.7.28",)),
    ("requireptr", ("x.7.25",)),
    ("failedstarttls", ("x.7.10", "x.7.11", "x.7.30")),
    ("suspend", ("x.7.13", "x.2.1")),
    ("hasmoved", ("x.1.6", "x.7.17", "x.7.18", "x.7.19")),
    ("userunknown", ("x.1.1", "x.1.3", "x.1.10", "x.1.351", "x.1.4")),
    ("hostunknown", ("x.1.2", "x.4.4")),
    ("rejected", ("x.1.7", "x.1.8", "x.7.27", "x.7.2")),
    ("userunknown", ("x.1.0",)),
    ("mailboxfull", ("x.2.2",)),
    ("emailtoolarge", ("x.2.3", "x.3.4")),
    ("filtered", ("x.2.0",)),
    ("systemerror", ("x.2.4", "x.3.0", "x.3.5", "x.5.0")),
    ("systemfull", ("x.3.1", "x.4.5")),
    ("notaccept", ("x.3.2",)),
    (
        "contenterror",
        (
            "x.3.3",
            "x.6.0",
            "x.6.1",
            "x.6.2",
            "x.6.3",
            "x.6.4",
            "x.6.5",
            "x.6.6",
            "x.6.7",
            "x.6.8",
            "x.6.9",
            "x.6.10",
        ),
    ),
    ("networkerror", ("x.4.0", "x.4.3", "x.4.6", "x.4.312", "x.4.316")),
    ("expired", ("x.4.1", "x.4.2", "x.4.7")),
    ("syntaxerror", ("x.5.1", "x.5.2", "x.5.3", "x.5.4", "x.5.5", "x.5.6")),
    ("policyviolation", ("x.7.9", "x.7.0", "x.7.1")),
    ("securityerror", ("x.7.8",)),
]
_CODE_RULES = [
    *(
        Rule(reason, codes=codes, name=f"{reason}: status {' '.join(codes)}")
        for reason, codes in _CODE_TABLE
    ),
    # Security status codes of the message (conversion, cryptography, integrity) and the
    # like: a sender-side reason, but alone no reason to pause the sender.
    Rule(
        "securityerror",
        codes=("x.7.3", "x.7.4", "x.7.5", "x.7.6", "x.7.7", "x.7.14", "x.7.15", "x.7.16"),
        name="securityerror: status x.7.3-x.7.7 x.7.14-x.7.16 (the message fails)",
        pauses=False,
    ),
]

# -- layer 2b: cue words, for replies no phrase or code explains ---------------------------------
# One word of a cause, or a noun and a verdict near it, in a reply whose wording no phrase
# above knows: weaker than a phrase, so after the status codes, but stronger than a bare reply
# code.  The same order as the phrases: the sender, then the message, then the recipient.
# Those that say the address is dead pass the same evidence check as any other.
_NEAR = r"(?:[^:;.!?]|\.(?=\S)){0,40}?"
_HELD = "disabled|deactivated|suspended|inactive|frozen|locked"
"""A short gap within one clause: no colon, semicolon or sentence end ("Remote host said:
554 invalid ..." is not a host that is invalid)."""
_CUE_TABLE: list[tuple[str, str]] = [
    ("blocked", r"\b(?:black|block) ?list(?:ed)?\b|\bdnsbl\b|\brbl\b"),
    (
        "blocked",
        rf"\b(?:ip|host|client|server)\b{_NEAR}\b(?:block|listed|reject|refus|denied|forbid|banned)",
    ),
    ("authfailure", r"\b(?:spf|dkim|dmarc)\b"),
    ("requireptr", r"\b(?:ptr|rdns)\b|reverse (?:dns|lookup|hostname|mapping)"),
    ("failedstarttls", r"\b(?:tls|ssl)\b"),
    ("norelaying", r"\brelay(?:ing)?\b(?!=)"),
    ("ratelimited", r"\btoo (?:many|fast|much|often)\b|\brate\b|throttl"),
    (
        "rejected",
        rf"\b(?:sender|mail from|envelope from|return-path|from address)\b{_NEAR}"
        r"\b(?:reject|invalid|denied|refused|unknown|not allowed|forbidden|bad)",
    ),
    ("virusdetected", r"\bvirus|malware|\binfect|trojan"),
    ("spamdetected", r"spam|\bjunk\b|\bbulk\b|unsolicited"),
    (
        "emailtoolarge",
        rf"\btoo (?:large|big)\b|\b(?:size|length)\b{_NEAR}\b(?:exceed|limit|too|maximum"
        r"|allowed)",
    ),
    (
        "contenterror",
        rf"\b(?:mime|attachments?|headers?|content|encoding)\b{_NEAR}"
        r"\b(?:invalid|illegal|bad|not allowed|malformed|broken)",
    ),
    (
        "hostunknown",
        rf"\b(?:domain|host ?name|host)\b{_NEAR}\b(?:not exist|does not exist"
        r"|doesn't exist|unknown|not found|invalid|unresolvable|no such)|\bnxdomain\b",
    ),
    (
        "userunknown",
        rf"\b(?:user|users|recipient|mailbox|addressee|account|address|userid"
        rf"|local[- ]part)\b{_NEAR}\b(?:unknown|invalid|not exist|nonexist|non-exist"
        r"|not found|does not exist|doesn't exist|no such|not valid)",
    ),
    (
        "userunknown",
        rf"\b(?:unknown|invalid|no such|nonexistent|non-existent)\b{_NEAR}"
        r"\b(?:user|recipient|mailbox|addressee|account|userid)\b",
    ),
    (
        "suspend",
        rf"\b(?:account|mailbox|user|address|recipient)\b{_NEAR}\b(?:{_HELD})\b"
        rf"|\b(?:{_HELD})\b{_NEAR}\b(?:account|mailbox|user|address|recipient)\b",
    ),
    ("mailboxfull", r"\b(?:quota|full|storage|disk space)\b"),
    ("policyviolation", r"\bpolic(?:y|ies)\b"),
    (
        "networkerror",
        r"\bdns\b|\blookup\b|unreachable|not reachable|\bloop|\bhops?\b"
        r"|connection (?:timed|refused|lost|reset|closed|dropped)",
    ),
    ("expired", r"\bexpired\b|too long|giving up|gave up|\btimed? ?out\b"),
    ("mailererror", r"\bpipe\b|\bmailer\b|exit (?:code|status)|\bexited\b"),
    ("syntaxerror", r"\bsyntax\b|malformed|unrecognized command|bad sequence"),
    ("filtered", r"\bfilter"),
]
_CUE_RULES = [
    Rule(reason, pattern, name=f"{reason}: cue /{pattern}/") for reason, pattern in _CUE_TABLE
]

# -- layer 3: reply codes -----------------------------------------------------------------------
_REPLY_RULES = [
    Rule("delivered", reply_codes=(250, 251, 252), name="delivered: 2xx"),
    Rule("systemerror", reply_codes=(421,), name="systemerror: 421 service not available"),
    Rule("systemfull", reply_codes=(452,), name="systemfull: 452 insufficient storage"),
    Rule("mailboxfull", reply_codes=(552,), name="mailboxfull: 552 storage exceeded"),
    Rule("syntaxerror", reply_codes=(500, 501, 502, 503, 504), name="syntaxerror: 50x"),
    Rule(
        "securityerror", reply_codes=(530, 534, 535, 538), name="securityerror: 53x (RFC 4954 AUTH)"
    ),
]

# -- the providers' own replies (providers.toml) ---------------------------------------------------
PROVIDER_RULES: tuple[Rule, ...] = tuple(
    _rules_from_toml(
        resources.files(__package__).joinpath("providers.toml").read_text(encoding="utf-8"),
        "sendguard/_bounces/providers.toml",
    )
)
"""What mailbox providers publish about their replies, from ``providers.toml``: those with a
pattern are checked before the generic phrases, those with codes alone before the generic
status codes."""

DEFAULT_RULES: tuple[Rule, ...] = (
    _GREYLISTING,
    *(rule for rule in PROVIDER_RULES if rule.pattern is not None),
    *_TEXT_RULES,
    *(rule for rule in PROVIDER_RULES if rule.pattern is None),
    *_CODE_RULES,
    *_CUE_RULES,
    *_REPLY_RULES,
)
"""The built-in table, in the order it is checked."""


class Rules:
    """A rule table: the user's ``extra`` rules first, then ``base`` (the defaults)."""

    def __init__(self, extra: Iterable[Rule] = (), *, base: Sequence[Rule] = DEFAULT_RULES) -> None:
        if isinstance(extra, Rule) or isinstance(base, Rule):
            raise ConfigurationError("Rules takes a list of rules: Rules([Rule(...)])")
        self.rules: tuple[Rule, ...] = (*extra, *base)
        for rule in self.rules:
            if not isinstance(rule, Rule):
                raise ConfigurationError(
                    f"Rules takes Rule objects, e.g. Rule('mailboxfull', r'casella piena'), "
                    f"not {rule!r}"
                )

    def first_match(self, text: str, enhanced: str | None, reply_code: int | None) -> Rule | None:
        """The first rule that matches, if any."""
        for rule in self.rules:
            if rule.matches(text, enhanced, reply_code):
                return rule
        return None


DEFAULT = Rules()
_DEFAULT_SET = frozenset(DEFAULT_RULES)

WINDOW = 4096
"""How much of a text :func:`classify` reads (characters, runs of white space folded)."""

_REPLY_AND_ENHANCED = re.compile(
    r"(?<![\d.])([245]\d\d)[ -]+#?\(?([245]\.\d{1,3}\.\d{1,3})(?![\d.])"
)
_ENHANCED = re.compile(r"(?<![\d.])#?\(?([245]\.\d{1,3}\.\d{1,3})(?![\d.]*\d)")
_REPLY = re.compile(r"(?:^|[\s<(#\[]|(?<=[A-Za-z]:))([245][0-5]\d)(?=[\s\-:,)\]]|$)")
_STAGE_HINTS = (
    (
        # Exim's "after initial connection" / "after EHLO", Postfix's "in reply to EHLO
        # command", a refused greeting: the sending host was refused before any recipient.
        re.compile(
            r"(?:in reply to|in response to|after|did not like our|at) (?:the )?(?:pipelined )?"
            r"(?:initial connection|connection time|connect(?:ion)? stage|greeting|banner|ehlo"
            r"|helo|lhlo)\b"
            r"|while (?:connecting|talking) to \S+:? (?:<<<|>>>)? ?(?:greeting|ehlo|helo)"
            r"|>>> (?:ehlo|helo) |refused to talk to me|(?:smtp )?greeting (?:failure|refused)"
            # qmail: "Connected to 192.0.2.1 but greeting failed." / "... my name was rejected."
            r"|\bbut (?:greeting failed|my name was rejected|connection died)",
            re.I,
        ),
        "connect",
    ),
    (
        re.compile(
            r"(?:in reply to|in response to|after|did not like our|at) (?:the )?(?:pipelined )?"
            r"mail from|>>> mail from|\bbut sender was rejected",
            re.I,
        ),
        "mail",
    ),
    (
        # A pipelining client sends DATA before it reads the RCPT replies; "Need RCPT" after
        # them says the refusals were for the recipients, not for the message.
        re.compile(
            r"(?:in reply to|after|did not like our) (?:the )?rcpt to|>>> rcpt to"
            r"|need rcpt|rcpt commands were rejected|valid rcpt command must precede"
            r"|<<< \d{3}[ -](?:error: )?no valid recipients",
            re.I,
        ),
        "rcpt",
    ),
    (
        re.compile(
            r"(?:in reply to|after) (?:the )?end of data|did not like our final data"
            r"|failed after i sent the message|>>> data\s*<<<",
            re.I,
        ),
        "data",
    ),
)
_SPACES = re.compile(r"\s+")
_INNER = re.compile(
    r"(?:returned|said|response was|replied|answered|reported|smtp;|error was)\W{0,3}"
    r"['\"]((?:[245]\d\d|[245]\.\d{1,3}\.\d{1,3})[ -][^'\"]{4,1000})['\"]"
    # Amazon SES: "Unknown address error 550-'5.7.0 user access deny.'"
    r"|(?<![\d.])[45]\d\d-['\"]([^'\"]{4,1000})['\"]",
    re.IGNORECASE,
)
"""A remote reply quoted in a report: "Remote Server returned '550 5.1.1 ...'"."""
_GENERIC = re.compile(r"\bunknown address error\b:?", re.IGNORECASE)
"""Prefixes that name no cause (Exchange's "Unknown address error" before the remote reply):
taken out before the rules read the text, so what follows decides."""
_URL = re.compile(r"(?:https?://|www\.)\S*", re.IGNORECASE)
_AGAINST = re.compile(
    r"polic(?:y|ies)|abuse|forg(?:ed|ery)|quota|relay|spam|block|den(?:ied|y)|prohibit"
    r"|not allowed|refused|reputation|\bauth|restrict|permi(?:t|ssion)|virus|content|loop"
    r"|\bspf\b|\bdkim\b|\bdmarc\b|\bip\b|reverse|\brate\b|limit",
    re.IGNORECASE,
)
_AGAINST_WORDS = re.compile(
    r"\bspam|polic(?:y|ies)|reputation|(?:black|block) ?list|\bspf\b|\bdkim\b|\bdmarc\b"
    r"|virus|malware|\babuse\b|\bcontent\b",
    re.IGNORECASE,
)
"""Words that outweigh a recipient phrase: "Invalid recipient - rejected by policy", "user
unknown; rejecting because of DMARC" (the common words of a recipient's refusal, "denied",
"relay=", "authoritative answer", are not among them)."""
"""Words that say a refusal is about the sender, the message or a policy: with them, a
recipient status code alone (5.1.1 with words the rules do not know) is no proof that the
address is dead."""
_NOT_UNKNOWN = frozenset({"2.0"})
_EVIDENT = frozenset({"1.1", "1.2", "1.3", "1.6", "1.10", "1.351", "7.17", "7.18"})
"""Status codes that prove an address dead by themselves (RFC 3463's bad mailbox, bad
system, bad mailbox syntax, mailbox moved; Exchange's 5.1.10 and 5.1.351; RFC 7293's changed
owners); the other recipient codes (5.1.0 other, 5.1.4 ambiguous, 5.3.2 not accepting, 5.4.4
no route) do not."""
_BEFORE_CONTENT = frozenset({"suspend", "onhold", "policyviolation", "filtered", "spamdetected"})
"""Reasons that, given before any recipient or content was sent (at the greeting, EHLO or
MAIL FROM), can only be about the sender."""


_CONTINUATION = re.compile(r"(?<=\S) [245]\d\d[- ](?:[245]\.\d{1,3}\.\d{1,3} )?(?=\S)")


def _unwrap(folded: str) -> str:
    """A multi-line reply as one text: the code prefixes of its continuation lines removed.

    ``550-5.7.1 Messages with multiple 550-5.7.1 addresses in From:`` reads as
    ``550-5.7.1 Messages with multiple addresses in From:``.
    """
    head = re.match(r"^[245]\d\d[- ](?:[245]\.\d{1,3}\.\d{1,3} )?", folded)
    if head is None:
        return folded
    prefix = head.group(0).strip()
    code = prefix[:3]
    rest = folded[head.end() :]
    return head.group(0) + _CONTINUATION.sub(
        lambda m: " " if m.group(0).strip().startswith(code) else m.group(0), rest
    )


def _evidence(rule: Rule, folded: str, enhanced: str | None, reply_code: int | None) -> bool:
    """Whether a default rule that says the address is dead proves it, in this text.

    Suppress only on positive evidence: a recipient code (5.1.1, or 5.2.1 for a disabled
    account) beside words about the sender, the message, a rate or a policy ("550 5.1.1 ...
    policy error", "... deactivated due to abuse", "5.2.1 ... receiving mail at a rate")
    proves nothing about the address, nor does a recipient phrase beside words of spam, a
    policy, a blocklist or SPF/DKIM/DMARC.  A user's own rules and definite phrases are
    taken at their word.
    """
    coded = rule.pattern is None
    if rule not in _DEFAULT_SET or rule.definite:
        return True
    if rule.reason not in HARD_REASONS and not (coded and rule.reason == "suspend"):
        return True
    if rule is _UNAVAILABLE:
        # RFC 5321's 550 text (Outlook.com's answer for an address it does not have, with
        # 5.5.0): not with a policy code, nor after a reply code other than 550.
        if enhanced is not None and enhanced[2:4] == "7.":
            return False
        if reply_code is not None and reply_code != 550:
            return False
    if coded and rule.reason in HARD_REASONS and (enhanced is None or enhanced[2:] not in _EVIDENT):
        return False  # a status code alone proves only 5.1.1, 5.1.2, 5.1.6, 5.1.10 (and kin)
    against = _AGAINST if coded else _AGAINST_WORDS
    return against.search(_URL.sub(" ", folded)) is None


def stage_hint(text: str) -> str | None:
    """The SMTP stage a diagnostic text names (``"mail"``, ``"rcpt"``, ``"data"``), if any."""
    return next((name for regex, name in _STAGE_HINTS if regex.search(text)), None)


def parse_codes(text: str) -> tuple[int | None, str | None]:
    """The SMTP reply code and enhanced status code found in a reply or diagnostic text."""
    found = _REPLY_AND_ENHANCED.search(text)
    if found:
        return int(found.group(1)), found.group(2)
    enhanced = _ENHANCED.search(text)
    reply = _REPLY.search(text)
    return (int(reply.group(1)) if reply else None, enhanced.group(1) if enhanced else None)


def action_for(reason: str, *, permanent: bool) -> Action:
    """What the guard does about *reason*, permanent or not (see the module's doc)."""
    return _action(reason, permanent)


def _action(reason: str, permanent: bool) -> Action:
    if reason in ("delivered", "vacation"):
        return Action.NONE
    if reason == "feedback":
        return Action.SUPPRESS
    if reason in SENDER_REASONS and (permanent or reason in TRANSIENT_SENDER_REASONS):
        return Action.PAUSE_SENDER
    if not permanent:
        return Action.RETRY
    if reason in HARD_REASONS:
        return Action.SUPPRESS
    return Action.FAIL


def _judge(
    folded: str, reply_code: int | None, enhanced_code: str | None, rules: Rules
) -> tuple[Rule | None, str, int | None, str | None]:
    """The rule that decides a failure, its reason, and the codes, read from *folded*."""
    inner = _INNER.search(folded)
    rule = None
    if inner is not None:
        # The remote server's own reply, quoted by the MTA that reports it, is judged first:
        # the wrapper's words ("mailbox unavailable", "could not be delivered") are the
        # reporter's, and prove no address dead by themselves.
        quoted = inner.group(1) or inner.group(2)
        quoted_reply, quoted_enhanced = parse_codes(quoted)
        reply_code = reply_code if reply_code is not None else quoted_reply
        enhanced_code = enhanced_code or quoted_enhanced
        rule = rules.first_match(quoted, quoted_enhanced or enhanced_code, reply_code)
    wrapper = rule is None and inner is not None
    if rule is None:
        rule = rules.first_match(folded, enhanced_code, reply_code)
    if rule is None:
        return None, "onhold", reply_code, enhanced_code
    reason = rule.reason
    if (
        reason == "suspend"
        and enhanced_code is not None
        and enhanced_code[2:] == "7.13"
        and "recipient" not in folded.lower()
    ):
        # RFC 7372's 5.7.13 is the account the client authenticated as: the sender's.
        return rule, "securityerror", reply_code, enhanced_code
    if not _evidence(rule, folded, enhanced_code, reply_code) or (
        wrapper and reason in HARD_REASONS and not rule.definite
    ):
        reason = "onhold"
    return rule, reason, reply_code, enhanced_code


def classify(
    text: str = "",
    *,
    reply_code: int | None = None,
    enhanced_code: str | None = None,
    stage: str | None = None,
    rules: Rules = DEFAULT,
) -> Classification:
    """Classify one SMTP reply or bounce diagnostic.

    Codes not given are parsed from *text* (``"550 5.1.1 ..."``, ``"#5.1.1"``, ``"(5.7.1)"``).
    Only the first :data:`WINDOW` characters (white space folded) are read.
    *stage* (``"rcpt"``, ``"data"``, ...) is informational for now: a reply at MAIL FROM
    refuses the sender, so recipient reasons given there become ``rejected``.
    """
    # Only a bounded window is read, so that no rule (the user's included) can take time that
    # grows faster than the text: an SMTP reply line is at most 512 bytes (RFC 5321), and
    # the longest multi-line replies and diagnostics are a few times that.
    window = text[: 4 * WINDOW]
    parsed_reply, parsed_enhanced = parse_codes(window)
    if stage is None:
        stage = stage_hint(window)
    reply_code = reply_code if reply_code is not None else parsed_reply
    enhanced_code = enhanced_code or parsed_enhanced
    folded = _unwrap(_SPACES.sub(" ", _GENERIC.sub(" ", window)).strip()[:WINDOW])
    direct_2xx = (
        reply_code is not None and reply_code // 100 == 2 and folded.startswith(str(reply_code))
    )
    rule, reason = None, "delivered"
    if not direct_2xx:
        rule, reason, reply_code, enhanced_code = _judge(folded, reply_code, enhanced_code, rules)
    definite = rule is not None and rule.definite
    if stage == "mail" and reason in (*HARD_REASONS, *_BEFORE_CONTENT, "securityerror"):
        reason = "rejected"  # refused at MAIL FROM: it is the sender that was refused
    elif stage in ("connect", "helo", "ehlo") and reason in (*HARD_REASONS, *_BEFORE_CONTENT):
        reason = "blocked"  # refused at the greeting or EHLO: the sending host was refused
    elif stage in ("data", "data_end") and reason == "userunknown" and not definite:
        reason = "filtered"  # "unknown user" after the content was seen: a filter's answer
    elif reason == "userunknown" and enhanced_code and enhanced_code[2:] in _NOT_UNKNOWN:
        # The words say "unknown user" but the status says the mailbox exists (x.2.0):
        # a filter, not a dead address.
        reason = "filtered"
    if reply_code is not None and reply_code // 100 in (4, 5):
        permanent = reply_code // 100 == 5
    elif enhanced_code is not None and enhanced_code[0] in "45":
        permanent = enhanced_code[0] == "5"
    else:
        permanent = reason in _PERMANENT_BY_DEFAULT
    action = _action(reason, permanent)
    if reason == "suspend" and definite and permanent and action is Action.FAIL:
        action = Action.SUPPRESS
    elif action is Action.PAUSE_SENDER and rule is not None and not rule.pauses:
        action = Action.FAIL if permanent else Action.RETRY
    return Classification(
        reason=reason,
        action=action,
        permanent=permanent,
        reply_code=reply_code,
        enhanced_code=enhanced_code,
        rule=rule.name if rule else ("a 2xx reply" if direct_2xx else "no rule matched"),
        text=text,
    )

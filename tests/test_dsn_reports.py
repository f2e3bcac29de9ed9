"""What parse_bounce reads from a DSN or a notice: whose report, which status, which cause.

tests/data/dsn/postfix-*.eml are real: Postfix 3.7 (Debian) run privately (``postfix -c``,
every service ``chroot = n``, no DNS, ``maximal_queue_lifetime = 0`` so that a deferral is
returned at once), relaying to a scripted aiosmtpd server, with virtual aliases
(alias@example.com -> alice@forwarded.example, list@example.com -> bob@example.org and
dan@example.org) and local aliases to programs that exit 67, 75, or 1 after printing "250 2.0.0
Ok".  The original's To and Cc name addresses that were never envelope recipients.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

from sendguard import BounceReport, parse_bounce
from sendguard._bounces import dsn
from sendguard.testing import make_dsn
from tests.conftest import message
from tests.test_bounce_linear import assert_linear_in
from tests.test_bounces import EXIM_NOTICE, POSTFIX_NOTICE, notice_of

DATA = Path(__file__).parent / "data" / "dsn"


def real(name: str) -> list[BounceReport]:
    return parse_bounce((DATA / name).read_bytes())


def facts(reports: list[BounceReport]) -> list[tuple[str, str, str, str, bool]]:
    return [(r.recipient, r.action, r.status, r.reason, r.hard) for r in reports]


def with_status(reply: str, status: str, *, diagnostic: str | None = None) -> bytes:
    """A DSN for alice@example.com whose Status field and Diagnostic-Code disagree."""
    raw = make_dsn(message("alice@example.com").as_bytes(), {"alice@example.com": reply})
    raw = re.sub(rb"Status: \S+", f"Status: {status}".encode(), raw)
    if diagnostic is not None:
        raw = raw.replace(f"Diagnostic-Code: smtp; {reply}".encode(), diagnostic.encode())
    return raw


# -- real Postfix DSNs ---------------------------------------------------------------------------


def test_real_aliases_name_the_address_each_failed_at_and_the_alias_it_came_from() -> None:
    reports = real("postfix-aliases-01.eml")
    assert facts(reports) == [
        ("erin@example.net", "failed", "5.7.1", "blocked", False),
        ("bob@example.org", "failed", "5.1.1", "userunknown", True),
        ("alice@forwarded.example", "failed", "5.1.1", "userunknown", True),
    ]
    assert [r.original_recipient for r in reports] == ["", "list@example.com", "alias@example.com"]
    # The original's To and Cc (carol, zed, the aliases) are no recipients of the DSN.
    names = {r.recipient for r in reports}
    assert not names & {"carol@example.net", "zed@example.net", "list@example.com"}


def test_real_deferral_returned_by_its_lifetime_keeps_the_status_postfix_gave() -> None:
    (report,) = real("postfix-alias-deferred-01.eml")
    assert facts([report]) == [("dan@example.org", "failed", "4.2.2", "mailboxfull", False)]
    assert report.original_recipient == "list@example.com"
    (grey,) = real("postfix-greylisted-01.eml")
    assert (grey.recipient, grey.status, grey.hard) == ("frank@example.net", "4.7.1", False)


def test_real_program_exit_statuses_are_mailer_errors_never_dead_addresses() -> None:
    # procmail's exit 67 (EX_NOUSER) becomes "Status: 5.1.1 ... user unknown": a mapping of an
    # exit status, not a remote server's word that the mailbox does not exist.
    piper, outper = real("postfix-pipe-exit-01.eml")
    assert facts([piper]) == [("piper@local.example", "failed", "5.1.1", "mailererror", False)]
    # A program that printed "250 2.0.0 Ok" and exited 1: no delivery, no 2xx status.
    assert facts([outper]) == [("outper@local.example", "failed", "5.3.0", "mailererror", False)]
    (temp,) = real("postfix-pipe-tempfail-01.eml")
    assert facts([temp]) == [("tempper@local.example", "failed", "4.3.0", "mailererror", False)]


def test_real_relayed_report_is_a_delivery() -> None:
    (report,) = real("postfix-relayed-01.eml")
    assert facts([report]) == [("carol@example.net", "delivered", "2.0.0", "delivered", False)]


# -- the Status field is the report's status -----------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "status", "want_status", "want_reason"),
    [
        # A specific Status wins over the diagnostic's code, of another class or not; the
        # diagnostic's text still gives the cause.
        ("450 4.2.0 Mailbox temporarily unavailable, try later", "5.1.1", "5.1.1", None),
        ("550 5.7.1 Client host blocked using a DNS blocklist", "5.1.1", "5.1.1", "blocked"),
        ("452 4.2.2 Mailbox full", "5.2.2", "5.2.2", "mailboxfull"),
        # A Status that names no detail takes the diagnostic's code of its own class only.
        ("550 5.3.0 Other mail system problem", "5.0.0", "5.3.0", None),
        ("450 4.2.0 Mailbox temporarily unavailable, try later", "5.0.0", "5.0.0", None),
    ],
)
def test_the_status_field_wins_and_the_diagnostic_is_its_detail(
    reply: str, status: str, want_status: str, want_reason: str | None
) -> None:
    (report,) = parse_bounce(with_status(reply, status))
    assert report.status == want_status
    assert report.diagnostic == reply
    if want_reason is not None:
        assert report.reason == want_reason
    # A refusal of the sender's IP under a "5.1.1" Status is still no dead address.
    if want_reason == "blocked":
        assert not report.hard


def test_a_delayed_status_with_a_permanent_looking_diagnostic_is_not_hard() -> None:
    raw = with_status("550 5.1.1 User unknown", "4.0.0").replace(
        b"Action: failed", b"Action: delayed"
    )
    (report,) = parse_bounce(raw)
    assert (report.action, report.status, report.hard) == ("delayed", "4.0.0", False)


# -- exit codes are no SMTP replies --------------------------------------------------------------


@pytest.mark.parametrize(
    "diagnostic",
    [
        "X-Postfix; permission denied. Command output: maildrop: exit code 250",
        "X-Unix; 250",
        "x-unix; 250 2.0.0 Ok: queued as 4F2A1",
        'X-Postfix; Command died with status 0: "/usr/bin/maildrop"',
        'X-Postfix; Command died with status 67: "/usr/bin/procmail"',
    ],
)
def test_an_exit_status_is_never_a_delivery(diagnostic: str) -> None:
    for status in ("5.3.0", None):
        raw = with_status("550 x", "5.3.0", diagnostic=f"Diagnostic-Code: {diagnostic}")
        raw = raw.replace(b"Action: failed\n", b"")
        if status is None:
            raw = raw.replace(b"Status: 5.3.0\n", b"")
        (report,) = parse_bounce(raw)
        assert report.action == "failed"
        assert report.reason == "mailererror"
        assert report.status.startswith("5")
        assert not report.hard


def test_sendmails_bare_unix_exit_status_is_a_mailer_error() -> None:
    raw = with_status("550 x", "4.5.0", diagnostic="Diagnostic-Code: X-Unix; 71")
    (report,) = parse_bounce(raw.replace(b"Action: failed", b"Action: delayed"))
    assert (report.action, report.status, report.reason) == ("delayed", "4.5.0", "mailererror")


SENDMAIL_PIPE = """   ----- The following addresses had permanent fatal errors -----
"|/usr/local/bin/procmail"
    (reason: {reason})
    (expanded from: <alice@example.com>)

   ----- Transcript of session follows -----
smrsh: "procmail" not available for sendmail programs (stat failed)
{transcript}"""
EXIM_PIPE = """This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  pipe to |/usr/local/bin/filter
    generated by alice@example.com

The following text was generated during the delivery attempt:

------ pipe to |/usr/local/bin/filter
       generated by alice@example.com ------

filter: exit 250"""


@pytest.mark.parametrize(
    "body",
    [
        SENDMAIL_PIPE.format(
            reason="Service unavailable", transcript="554 5.0.0 Service unavailable"
        ),
        SENDMAIL_PIPE.format(reason="250", transcript="procmail: exit 250"),
        EXIM_PIPE,
    ],
    ids=["sendmail-unavailable", "sendmail-exit-250", "exim-generated-by"],
)
def test_a_failed_pipe_is_reported_for_the_address_it_was_generated_from(body: str) -> None:
    raw = notice_of(message("alice@example.com").as_bytes(), body)
    (report,) = parse_bounce(raw)
    assert (report.recipient, report.action, report.reason, report.hard) == (
        "alice@example.com",
        "failed",
        "mailererror",
        False,
    )
    assert not report.status.startswith("2")


# -- no recipient is invented -------------------------------------------------------------------

EXIM_FAILED = """This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  alice@example.com
    host mx.example.com [192.0.2.7]
    SMTP error from remote mail server after RCPT TO:<alice@example.com>:
    550 5.1.1 User unknown
"""
QUOTED = (
    "From: news@sender.example\nTo: alice@example.com, carol@example.net\n"
    "Cc: dave@example.org\nSubject: hi\nDate: Mon, 7 Dec 2026 10:00:00 +0000\n\n"
    "Hi, write to eve@example.biz\n"
)


@pytest.mark.parametrize("prefix", ["", "> "], ids=["inline", "quoted"])
def test_a_quoted_original_without_a_marker_names_no_recipients(prefix: str) -> None:
    quoted = "".join(f"{prefix}{line}\n" for line in QUOTED.splitlines())
    raw = (
        "From: Mail Delivery System <Mailer-Daemon@mx.example>\nTo: news@sender.example\n"
        f"Subject: Mail delivery failed: returning message to sender\n\n{EXIM_FAILED}\n{quoted}"
    )
    assert facts(parse_bounce(raw.encode())) == [
        ("alice@example.com", "failed", "5.1.1", "userunknown", True)
    ]


def test_a_notice_quoting_subject_and_date_before_its_text_is_still_read() -> None:
    body = (
        "We had trouble delivering your message. Full details follow:\n\n"
        "Subject: 'hi'\nDate: 'Mon, 7 Dec 2026 10:00:00 +0000'\n\n1 error(s):\n\n"
        "SMTP Server <mx.example.org> rejected recipient <bob@example.org> "
        "(Error following RCPT command). It responded as follows: [550 5.1.1 User unknown]"
    )
    raw = f"From: postmaster@mx.example\nSubject: Undeliverable mail\n\n{body}\n"
    (report,) = parse_bounce(raw.encode())
    assert (report.recipient, report.reason, report.status) == (
        "bob@example.org",
        "userunknown",
        "5.1.1",
    )


def test_a_dsn_whose_original_names_others_reports_its_own_recipients_only() -> None:
    original = message("alice@example.com").as_bytes()
    original = original.replace(
        b"To: alice@example.com",
        b"To: alice@example.com, carol@example.net\nCc: dave@example.org",
    )
    raw = make_dsn(
        original,
        {"alice@example.com": "550 5.1.1 User unknown", "bob@example.org": "452 4.2.2 Full"},
    )
    assert facts(parse_bounce(raw)) == [
        ("alice@example.com", "failed", "5.1.1", "userunknown", True),
        ("bob@example.org", "failed", "4.2.2", "mailboxfull", False),
    ]


def test_where_to_ask_for_help_is_no_recipient() -> None:
    body = (
        "This is the mail system at host mx.example.\n\n"
        "For further assistance, please contact <support@isp.example>.\n"
        "If you do so, please include this problem report.\n\n"
        "<alice@example.com>: host mx.example.com[192.0.2.7] said: 550 5.1.1\n"
        "    <alice@example.com>: Recipient address rejected: User unknown"
    )
    raw = notice_of(message("alice@example.com").as_bytes(), body)
    assert [r.recipient for r in parse_bounce(raw)] == ["alice@example.com"]


def test_a_notice_naming_nobody_does_not_fail_every_recipient_of_the_original() -> None:
    original = message("alice@example.com").as_bytes()
    several = original.replace(b"To: alice@example.com", b"To: alice@example.com, bob@example.org")
    body = "Your message could not be delivered: 550 5.1.1 User unknown"
    assert [r.recipient for r in parse_bounce(notice_of(several, body))] == [""]
    # One addressee alone: that is whom the notice is about.
    assert [r.recipient for r in parse_bounce(notice_of(original, body))] == ["alice@example.com"]


@pytest.mark.parametrize("how", ["", "ultimately "])
def test_exim_and_postfix_alias_notices_name_every_expanded_address_once(how: str) -> None:
    exim = "\n\n".join(
        EXIM_NOTICE.format(to=to, sent="list@example.com", how=how).split("\n\n", 2)[-1]
        for to in ("alice@forwarded.example", "bob@forwarded.example")
    )
    postfix = "\n\n".join(
        POSTFIX_NOTICE.format(to=to, sent="list@example.com").split("\n\n", 1)[-1]
        for to in ("alice@forwarded.example", "bob@forwarded.example")
    )
    for body in (exim, postfix):
        raw = notice_of(message("list@example.com").as_bytes(), body)
        reports = parse_bounce(raw)
        assert [(r.recipient, r.original_recipient, r.hard) for r in reports] == [
            ("alice@forwarded.example", "list@example.com", True),
            ("bob@forwarded.example", "list@example.com", True),
        ]


# -- transcripts --------------------------------------------------------------------------------


def test_a_transcript_is_judged_by_its_failure_not_the_250s_before_it() -> None:
    body = (
        "<alice@example.com>: host mx.example.com[192.0.2.7] said:\n"
        " Out: 220 mx.example.com ESMTP\n In:  MAIL FROM:<news@sender.example>\n"
        " Out: 250 2.1.0 Ok\n In:  RCPT TO:<alice@example.com>\n Out: 250 2.1.5 Ok\n"
        " In:  DATA\n Out: 354 End data with <CR><LF>.<CR><LF>\n"
        " Out: 451 4.3.0 Error: queue file write error\n In:  QUIT\n Out: 221 2.0.0 Bye"
    )
    (report,) = parse_bounce(notice_of(message("alice@example.com").as_bytes(), body))
    assert (report.status, report.reason, report.hard) == ("4.3.0", "systemerror", False)


# -- linear in the input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [
        "To: a@b.example\n" + " x\n" * 4000,
        "> Subject: s\n" + ">  y\n" * 4000,
        "please contact " * 2000,
        "for further assistance " * 2000,
        "exit " * 4000,
        "Out: 250 ok " * 4000,
        "  generated by " * 2000,
    ],
    ids=["continuations", "quoted", "contact", "assistance", "exit", "transcript", "generated"],
)
def test_the_new_patterns_stay_linear(shape: str) -> None:
    def make(n: int) -> bytes:
        body = EXIM_FAILED + shape * n
        return notice_of(message("alice@example.com").as_bytes(), body)

    assert_linear_in(functools.partial(parse_bounce, time_budget=None), make, (1, 2, 4))
    assert_linear_in(dsn._failing_reply, lambda n: shape * n, (1, 2, 4))

"""Agreement with Sisimai's labels on the real bounce corpus (tests/corpus, development split).

The numbers are floors: a change to the rules that lowers them fails here.  The issue's targets
(90 % on lines, 95 % on e-mails, 97 % of hard bounces) are not all reached; BENCHMARKS.md has
the table and the gap.  Where we disagree with the labels on purpose, the case is below.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.corpus import Result, evaluate
from sendguard import Action, classify, parse_bounce

CORPUS = Path(__file__).parent / "corpus"


@pytest.fixture(scope="module")
def result() -> Result:
    return evaluate(CORPUS)


def test_no_sender_side_refusal_is_ever_suppressed(result: Result) -> None:
    assert result.sender_side > 80
    assert result.sender_side_suppressed == 0


def test_floors(result: Result) -> None:
    # Lowered with "suppress only on positive evidence" (issue 15): a few replies Sisimai
    # calls userunknown name no cause (see the deliberate disagreements below).
    assert result.line_rate >= 87.0
    assert result.pct(result.found, result.recipients) >= 99.5
    assert result.reason_rate >= 87.0
    assert result.pct(result.status_agree, result.recipients) >= 91.5
    assert result.both_rate >= 84.0
    assert result.hard_rate >= 94.0


# -- deliberate disagreements ----------------------------------------------------------------


def test_user_unknown_without_a_stage_is_userunknown() -> None:
    # Sisimai labels some of these "filtered" (about 20 in lines.jsonl): it knew, from the whole
    # bounce, that the refusal came after DATA.  Given the line alone, "user unknown" means the
    # mailbox does not exist; the same line with a stage is classified as Sisimai does.
    assert classify("550 <kijitora@example.jp>: User unknown").reason == "userunknown"
    assert classify("550 kijitora@example.jp... No such user").reason == "userunknown"
    staged = "550 <kijitora@example.jp>: User unknown (in reply to end of DATA command)"
    assert classify(staged).reason == "filtered"
    # au (KDDI) names no address when the recipient's own filter refused the sender.
    assert classify("550 : User unknown").reason == "filtered"


def test_amavis_spam_reject_is_spamdetected() -> None:
    # Label notcompliantrfc (go-sisimai); the Ruby and Perl Sisimai say spamdetected, as we do.
    assert classify("554 5.7.0 Reject, id=20025-09 - SPAM").reason == "spamdetected"


def test_a_delivery_failure_quoting_a_name_server_error_is_networkerror() -> None:
    # rhost-aol-06 is labelled notaccept (hard); "Malformed or unexpected name server reply"
    # is a DNS failure that may pass, so we neither call it hard nor suppress the address.
    text = (
        "Name service error for name=example.org type=MX: Malformed or unexpected name server reply"
    )
    assert classify(text).reason == "networkerror"


def test_multi_line_replies_are_read_as_one_text() -> None:
    # Not a disagreement: the continuation prefixes Gmail writes inside its reply are removed
    # before the phrases are matched.
    (report,) = parse_bounce((CORPUS / "emails" / "lhost-postfix-28.eml").read_bytes())
    assert (report.reason, report.status, report.hard) == ("notcompliantrfc", "5.7.1", False)


@pytest.mark.parametrize(
    "line",
    [
        # Postfix's prefix with no cause after it (Sisimai: userunknown).
        "host mx.nn.auone-net.jp[192.0.2.222] said: 550 <neko@ne.example.jp>: Recipient address "
        "rejected. (in reply to RCPT TO command)",
        # A recipient access rule outside Microsoft's 5.4.1 (Sisimai: userunknown).
        "554 5.7.1 <kijitora@example.ch>: Recipient address rejected: Access denied",
        # A bare reply code says nothing of the address.
        "550 Requested action not taken",
        "553 sorry",
    ],
)
def test_a_refusal_that_names_no_cause_fails_the_message_without_suppressing(line: str) -> None:
    c = classify(line)
    assert c.action is Action.FAIL, c

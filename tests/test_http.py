"""sendguard.http: what the HTTP adapters share."""

from __future__ import annotations

import datetime as dt
from email.message import EmailMessage

import pytest

from sendguard import Stage
from sendguard.http import listed_in, retry_after, temporary

NOW = dt.datetime(2026, 11, 24, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("Tue, 24 Nov 2026 12:01:30 GMT", 90.0),
        ("Tue, 24 Nov 2026 12:01:30 -0000", 90.0),  # a date without a zone: UTC, not a crash
        ("Tue, 24 Nov 2026 11:00:00 GMT", 0.0),  # already past: no wait
        ("soon", None),
        ("-5", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(
    header: str | None, seconds: float | None
) -> None:
    assert retry_after(header, now=NOW) == seconds


def test_temporary_is_a_451_that_says_whether_it_is_a_rate_limit() -> None:
    limited = temporary("HTTP 429: slow down", ratelimited=True, retry_after_header="30")
    outage = temporary("HTTP 503: maintenance")
    assert (limited.code, limited.stage, limited.reason, limited.retry_after) == (
        451,
        Stage.DATA,
        "ratelimited",
        30.0,
    )
    assert (outage.code, outage.reason, outage.retry_after) == (451, None, None)


def test_listed_in_keeps_the_header_order_and_the_envelope_spelling() -> None:
    msg = EmailMessage()
    msg["To"] = "Bob <BOB@example.com>, stranger@example.com, alice@example.com"
    recipients = ["alice@example.com", "bob@example.com", "hidden@example.com"]
    assert listed_in(msg, "To", recipients) == ["bob@example.com", "alice@example.com"]
    assert listed_in(msg, "Cc", recipients) == []

"""parse_bounce never raises anything but BounceParseError, whatever it is given."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sendguard import BounceParseError, BounceReport, classify, parse_bounce

CORPUS = sorted((Path(__file__).parent / "corpus" / "emails").glob("*.eml"))


def parses_or_refuses(raw: bytes | str) -> list[BounceReport]:
    try:
        reports = parse_bounce(raw)
    except BounceParseError:
        return []
    assert isinstance(reports, list)
    for report in reports:
        assert report.action in ("failed", "delayed", "delivered", "complaint", "autoreply")
        assert not (report.hard and report.action != "failed")
    return reports


@given(st.binary(max_size=4096))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes(raw: bytes) -> None:
    parses_or_refuses(raw)


@given(st.text(max_size=2048))
@settings(max_examples=200, deadline=None)
def test_arbitrary_text(raw: str) -> None:
    parses_or_refuses(raw)


HEADERS = st.sampled_from(
    [
        "Content-Type: multipart/report; report-type=delivery-status; boundary=b\n",
        "Content-Type: message/delivery-status\n",
        'Content-Type: multipart/mixed; boundary=""\n',
        "Content-Transfer-Encoding: base64\n",
        "Content-Type: text/plain; charset=nonexistent-charset\n",
        "From: MAILER-DAEMON@example.org\n",
        "Subject: Undelivered Mail Returned to Sender\n",
        "Auto-Submitted: auto-replied\n",
    ]
)
BODY_LINES = st.sampled_from(
    [
        "--b\n",
        "--b--\n",
        "Content-Type: message/delivery-status\n",
        "Content-Type: message/rfc822\n",
        "Final-Recipient: rfc822; a@example.com\n",
        "Final-Recipient: rfc822;\n",
        "Action: failed\n",
        "Status: 5.1.1\n",
        "Status: 9.9.9.9\n",
        "Diagnostic-Code: smtp; 550 5.1.1 User unknown\n",
        "Diagnostic-Code: \n",
        " continued\n",
        "\n",
        "<b@example.com>: host x said: 550 no such user\n",
        "=?utf-8?b?////?=\n",
        '{"notificationType": "Bounce", "bounce": {"bouncedRecipients": [{}]}}\n',
    ]
)


@given(st.lists(HEADERS, max_size=6), st.lists(BODY_LINES, max_size=30))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_structured_garbage(headers: list[str], lines: list[str]) -> None:
    parses_or_refuses("".join(headers) + "\n" + "".join(lines))


@given(st.text(max_size=500))
@settings(max_examples=300, deadline=None)
def test_classify_takes_any_text(text: str) -> None:
    found = classify(text)
    assert found.reason
    assert found.action


@pytest.mark.parametrize("seed", range(3))
def test_mangled_real_bounces(seed: int) -> None:
    """A fuzz run: every corpus e-mail, truncated and with random bytes flipped."""
    rng = random.Random(seed)
    for path in CORPUS:
        raw = bytearray(path.read_bytes())
        for _ in range(max(1, len(raw) // 200)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        parses_or_refuses(bytes(raw[: rng.randrange(1, len(raw) + 1)]))

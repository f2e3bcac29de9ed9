"""parse_bounce and classify take time linear in their input, whoever wrote it.

Each hostile shape is timed at 1x, 2x and 4x; the 4x input may take at most 6x the 1x time
(the minimum of a few runs, to de-noise).  A quadratic step gives 16x, and today's hostile
inputs ran for seconds before these bounds.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import re
import time
from collections.abc import Callable
from email.message import Message
from typing import TypeVar

import pytest

from sendguard import DEFAULT_RULES, BounceParseError, Guard, classify, parse_bounce
from sendguard._bounces.classify import WINDOW
from sendguard._bounces.dsn import bounce_message
from sendguard._bounces.token import find_token

T = TypeVar("T")

# The floor under which a time is all overhead and noise, and says nothing about growth.
FLOOR = 0.01


def fastest(work: Callable[[], object], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def assert_linear(make: Callable[[int], bytes], sizes: tuple[int, ...]) -> list[float]:
    """Time parse_bounce on each size, interleaved (a load spike hits every size alike)."""
    return assert_linear_in(functools.partial(parse_bounce, time_budget=None), make, sizes)


def assert_linear_in(
    read: Callable[[T], object], make: Callable[[int], T], sizes: tuple[int, ...]
) -> list[float]:
    """Time *read* on each size, interleaved (a load spike hits every size alike)."""
    inputs = [make(n) for n in sizes]
    times = [float("inf")] * len(inputs)
    for _ in range(4):
        for i, raw in enumerate(inputs):
            took = fastest(functools.partial(read, raw), 1)
            times[i] = min(times[i], took)
    assert times[-1] <= max(6 * times[0], FLOOR), f"superlinear: {sizes} took {times}"
    return times


HEAD = "From: MAILER-DAEMON@mx.example.net\nSubject: Undelivered Mail Returned to Sender\n"


def notice(body: str) -> bytes:
    return (HEAD + "\n" + body + "\n").encode()


# -- one notice of repeated words ----------------------------------------------------------------

# Words the rules look for and then look further for something after them ("spf ... fail"),
# the prefix of an address, white space, and a recipient field written inline.
WORDS = [
    "spf ",
    "fail ",
    "dkim ",
    "try later ",
    "account ",
    "user ",
    " ",
    "\t ",
    "envelope-from ",
    "<<",
    "a-",
    "Final-Recipient: rfc822; someone@example.com\n",
    "Final-Recipient: rfc822; a@b.example\nDiagnostic-Code: smtp; 550 5.1.1 x\n",
]


@pytest.mark.parametrize("word", WORDS)
def test_a_notice_of_one_repeated_word(word: str) -> None:
    assert_linear(lambda kb: notice(word * (kb * 1024 // len(word))), (15, 60))


def test_a_long_line_without_newline() -> None:
    assert_linear(lambda kb: notice("user@example.com " + "x@y" * (kb * 1024 // 3)), (30, 60, 120))


def test_many_header_lines() -> None:
    def make(n: int) -> bytes:
        fields = "".join(f"X-Field-{i}: value for user{i}@example.com\n" for i in range(n))
        return (HEAD + fields + "\nuser@example.com: 550 user unknown\n").encode()

    assert_linear(make, (1000, 2000, 4000))


# -- DSNs, MIME parts, nesting -------------------------------------------------------------------


def postfix_dsn(recipients: int) -> bytes:
    """A Postfix-shaped DSN for *recipients* recipients, each in the notice and the fields."""
    lines = "\n".join(
        f"<user{i}@example.com>: host mx.example.com[192.0.2.1] said: 550 5.1.1 "
        f"<user{i}@example.com>: Recipient address rejected: User unknown "
        "(in reply to RCPT TO command)"
        for i in range(recipients)
    )
    groups = "\n".join(
        f"Final-Recipient: rfc822; user{i}@example.com\nOriginal-Recipient: rfc822;"
        f"user{i}@example.com\nAction: failed\nStatus: 5.1.1\nRemote-MTA: dns; mx.example.com\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <user{i}@example.com>: Recipient address\n"
        "    rejected: User unknown\n"
        for i in range(recipients)
    )
    return f"""{HEAD}MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

This is the mail system at host mx.example.net.

{lines}

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

{groups}
--B
Content-Type: text/rfc822-headers

From: news@sender.example
Message-ID: <1@sender.example>

--B--
""".encode()


def test_a_dsn_of_many_recipients() -> None:
    assert_linear(postfix_dsn, (100, 200, 400))
    reports = parse_bounce(postfix_dsn(800))
    assert len(reports) == 800
    assert all(r.hard and r.reason == "userunknown" for r in reports)
    assert reports[799].recipient == "user799@example.com"


def test_many_mime_parts() -> None:
    def make(n: int) -> bytes:
        parts = "".join(
            f"--B\nContent-Type: text/plain\n\npart {i}: user{i}@example.com\n" for i in range(n)
        )
        head = f"{HEAD}MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=B\n\n"
        return f"{head}{parts}--B--\n".encode()

    assert_linear(make, (600, 1200, 2400))


def test_deeply_nested_returned_messages() -> None:
    def make(depth: int) -> bytes:
        inner = "From: a@b.example\nSubject: hi\n\nhello user@example.com\n"
        for _ in range(depth):
            inner = f"{HEAD}MIME-Version: 1.0\nContent-Type: message/rfc822\n\n{inner}"
        return inner.encode()

    assert_linear(make, (40, 80, 160))


# -- the token of the returned original -----------------------------------------------------------

TOKEN = "v2.1790000000.AAAAAAAAAAAAAAAAAAAAAAAA"
ORIGINAL = (
    "From: news@sender.example\nTo: bob@example.com\nSubject: hi\n"
    f"Message-ID: <1@sender.example>\nX-Sendguard-Token: {TOKEN}\n\nhello\n"
)
# A hop's worth of header fields, so that every level of nesting has some text of its own.
HOP = HEAD + "".join(
    f"Received: from relay{i}.example by mx.example; Tue, 1 Dec 2026\n" for i in range(8)
)


def nested(depth: int, original: str = ORIGINAL) -> Message:
    """*original*, forwarded inside *depth* levels of ``message/rfc822`` (parsed)."""
    inner = original
    for _ in range(depth):
        inner = f"{HOP}MIME-Version: 1.0\nContent-Type: message/rfc822\n\n{inner}"
    return bounce_message(inner.encode())


def test_find_token_is_linear_in_the_depth_of_nested_originals() -> None:
    for depth in (1, 50, 200):
        assert find_token(nested(depth)) == (TOKEN, "<1@sender.example>")
    # Without a token (a forged or unsigned bounce) every level is searched.
    unsigned = ORIGINAL.replace("X-Sendguard-Token", "X-Other")
    assert_linear_in(find_token, functools.partial(nested, original=unsigned), (50, 100, 200))


def test_find_token_reads_encoded_parts_and_never_the_bounces_own_headers() -> None:
    head = f"{HEAD}MIME-Version: 1.0\nContent-Type: multipart/report; boundary=B\n\n"
    for cte, body in (
        ("base64", base64.encodebytes(ORIGINAL.encode()).decode()),
        ("quoted-printable", ORIGINAL.replace("=", "=3D").replace("hi\n", "h=\ni\n")),
    ):
        raw = f"{head}--B\nContent-Type: text/rfc822-headers\nContent-Transfer-Encoding: {cte}"
        assert find_token(bounce_message(f"{raw}\n\n{body}--B--\n".encode())) == (
            TOKEN,
            "<1@sender.example>",
        )
    own = f"X-Sendguard-Token: {TOKEN}\nMessage-ID: <1@sender.example>\n{HEAD}\nhello\n"
    assert find_token(bounce_message(own.encode())) is None


def test_find_token_is_linear_in_the_number_of_parts() -> None:
    def make(n: int) -> Message:
        parts = "".join(
            f"--B\nContent-Type: message/rfc822\n\n{HOP}Message-ID: <{i}@x.example>\n\nhi\n"
            f"--B\nContent-Type: text/rfc822-headers\nContent-Transfer-Encoding: base64\n\n"
            + base64.encodebytes(HOP.encode()).decode()
            for i in range(n)
        )
        head = f"{HEAD}MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=B\n\n"
        return bounce_message(f"{head}{parts}--B--\n".encode())

    assert_linear_in(find_token, make, (30, 60, 120))
    assert_linear_in(find_token, make, (600, 1200, 2400))  # past MAX_PARTS: no more is read


def test_find_token_reads_a_bounded_amount() -> None:
    def make(parts: int) -> Message:
        # Parts of 128 KiB: each read to its first 64 KiB, 1 MiB in all (16 parts), whatever
        # the size of the bounce.
        filler = "".join(
            f"--B\nContent-Type: text/plain\n\n{'X-Sendguard-Token: ' * 6900}\n"
            for _ in range(parts)
        )
        head = f"{HEAD}MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=B\n\n"
        tail = f"--B\nContent-Type: text/rfc822-headers\n\n{ORIGINAL}--B--\n"
        return bounce_message(f"{head}{filler}{tail}".encode())

    times = assert_linear_in(find_token, make, (16, 32, 64))
    assert times[-1] <= max(2 * times[0], FLOOR), times  # the same amount read, however large
    assert find_token(make(1)) == (TOKEN, "<1@sender.example>")
    assert find_token(make(16)) is None  # past what is read


def test_an_html_notice_of_unclosed_tags() -> None:
    assert_linear(lambda kb: notice("<html><body>" + "<script <p" * (kb * 100)), (15, 30, 60))


# -- every rule, alone ---------------------------------------------------------------------------


def test_no_rule_is_superlinear_on_its_own_words() -> None:
    """Each default rule searched in a repetition of each word it names (and white space)."""
    slow = []
    for rule in DEFAULT_RULES:
        regex = rule._regex
        if regex is None:
            continue
        words = dict.fromkeys(re.findall(r"[a-z][a-z-]+", regex.pattern.lower()))
        for word in [*list(words)[:5], " ", "a@b.example "]:
            small, large = word * (1000 // len(word) + 1), word * (4000 // len(word) + 1)
            t1 = fastest(lambda s=small, r=regex: r.search(s), 2)  # type: ignore[misc]
            t4 = fastest(lambda s=large, r=regex: r.search(s), 2)  # type: ignore[misc]
            if t4 > max(6 * t1, 0.001):
                slow.append((rule.name, word, t1, t4))
    assert not slow


def test_classify_reads_a_bounded_window() -> None:
    long = "spf " * 50_000
    window = long[: 4 * WINDOW]
    # Fifty times the text, the same time (within noise): only the window is read.
    assert fastest(lambda: classify(long), 3) < 2 * fastest(lambda: classify(window), 3) + 0.005
    found = classify("550 5.1.1 User unknown " + "x " * 50_000)
    assert found.reason == "userunknown"


# -- a budget, and off the event loop ------------------------------------------------------------


def test_a_bounce_over_the_time_budget_is_refused() -> None:
    with pytest.raises(BounceParseError, match="too costly"):
        parse_bounce(postfix_dsn(400), time_budget=0.0)
    assert len(parse_bounce(postfix_dsn(400), time_budget=None)) == 400


async def test_the_event_loop_keeps_serving_while_a_bounce_is_read() -> None:
    raw = postfix_dsn(1600)
    gaps: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async with Guard() as guard:
        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0.02)
        start = time.perf_counter()
        reports = await guard.ingest_bounce(raw)
        took = time.perf_counter() - start
        done.set()
        await ticker
    assert len(reports) == 1600
    # Reading it takes a while (here, with the store), yet the loop never stalls for long.
    assert max(gaps) < max(0.15, took / 3), (max(gaps), took)

"""Whatever anyone sends a webhook endpoint, the parsers raise WebhookAuthError (401) or, for a
request that authenticated, WebhookPayloadError (400), and handle() answers; nothing else.

Every provider's parser is attacked with every field of a valid payload replaced by every kind
of JSON value (and removed), with raw bodies (not UTF-8, not JSON, nested 100,000 deep, huge,
form-encoded), and with hypothesis-generated values and mutations.
"""

from __future__ import annotations

import copy
import functools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sendguard_mailgun import WebhookVerifier
from sendguard_postmark import parse_webhook as postmark_parse
from sendguard_sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER
from sendguard_sendgrid import parse_webhook as sendgrid_parse
from sendguard_ses import SNSVerifier

from sendguard import DeliveryEvent, SyncGuard, WebhookAuthError, WebhookPayloadError
from sendguard.webhooks import Verify, handle_sync
from tests.adapters import test_mailgun as mailgun
from tests.adapters import test_postmark as postmark
from tests.adapters import test_sendgrid as sendgrid
from tests.adapters import test_ses as ses

HOLE = "\x00hole\x00"  # where a raw JSON text goes into a payload


@dataclass(frozen=True)
class Provider:
    name: str
    valid: Any
    """A payload the provider sends (what its authentication, if any, covers last)."""
    verify: Verify
    wrap: Callable[[str], tuple[dict[str, str], bytes]]
    """An authenticated request carrying the payload given as JSON text."""
    unauthenticated: Callable[[bytes], tuple[dict[str, str], bytes]]
    """A request around raw *body* bytes that cannot authenticate."""


def _mailgun_wrap(text: str) -> tuple[dict[str, str], bytes]:
    signature = json.loads(mailgun.signed({}))["signature"]
    return {}, f'{{"signature": {json.dumps(signature)}, "event-data": {text}}}'.encode()


def _sendgrid_wrap(text: str) -> tuple[dict[str, str], bytes]:
    body = text.encode("utf-8", "surrogatepass")
    return sendgrid.sign(body, str(int(sendgrid.NOW.timestamp()))), body


def _postmark_wrap(text: str) -> tuple[dict[str, str], bytes]:
    return postmark.auth("hook", "new-secret"), text.encode("utf-8", "surrogatepass")


PROVIDERS = [
    Provider(
        "mailgun",
        mailgun.FAILED,
        WebhookVerifier(signing_keys=mailgun.SIGNING, clock=lambda: mailgun.NOW).parse,
        _mailgun_wrap,
        lambda body: ({}, body),
    ),
    Provider(
        "ses",
        ses.BOUNCE,
        SNSVerifier(topic_arns=[ses.TOPIC], fetch=ses.Fetcher(), clock=lambda: ses.NOW).parse,
        lambda text: (
            {},
            ses.sns("Notification", {}, message=text).encode("utf-8", "surrogatepass"),
        ),
        lambda body: ({}, body),
    ),
    Provider(
        "sendgrid",
        sendgrid.EVENTS,
        functools.partial(sendgrid_parse, public_key=sendgrid.PUBLIC, clock=lambda: sendgrid.NOW),
        _sendgrid_wrap,
        lambda body: ({SIGNATURE_HEADER: "AAAA", TIMESTAMP_HEADER: "1"}, body),
    ),
    Provider(
        "postmark",
        postmark.BOUNCE,
        functools.partial(postmark_parse, credentials=postmark.CREDENTIALS),
        _postmark_wrap,
        lambda body: (postmark.auth("hook", "guess"), body),
    ),
]
BY_NAME = {p.name: p for p in PROVIDERS}


@pytest.fixture(scope="module")
def guard() -> Iterator[SyncGuard]:
    with SyncGuard() as g:
        yield g


def outcome(provider: Provider, headers: dict[str, str], body: bytes) -> type[Exception] | None:
    """What parsing the request gives: None (events), or the class of the error raised."""
    try:
        events = provider.verify(headers, body)
    except WebhookAuthError as exc:
        return type(exc)
    assert isinstance(events, list)
    assert all(isinstance(e, DeliveryEvent) for e in events)
    return None


def attack(
    guard: SyncGuard, provider: Provider, headers: dict[str, str], body: bytes, *, signed: bool
) -> None:
    """Parse and handle one request; a signed one may be refused only as malformed (400)."""
    found = outcome(provider, headers, body)
    if signed and provider.name == "mailgun" and not readable(body):
        # Mailgun's signature sits in the same JSON as the event: unreadable JSON hides it.
        assert found is WebhookAuthError
    elif signed:
        assert found in (None, WebhookPayloadError), found
    answer = handle_sync(guard, provider.verify, headers, body)
    expected = 200 if found is None else 400 if found is WebhookPayloadError else 401
    assert answer.status == expected, (answer, found)


def readable(body: bytes) -> bool:
    try:
        json.loads(body)
    except (ValueError, RecursionError):
        return False
    return True


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a field or item of *value*, the value itself first."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, (*prefix, i))


def with_text(value: Any, path: tuple[Any, ...], text: str | None) -> str:
    """*value* as JSON text, the field at *path* replaced by raw JSON *text* (None: removed)."""
    if not path:
        return text if text is not None else ""
    changed = copy.deepcopy(value)
    parent = changed
    for step in path[:-1]:
        parent = parent[step]
    if text is None:
        del parent[path[-1]]
        return json.dumps(changed)
    parent[path[-1]] = HOLE
    return json.dumps(changed).replace(json.dumps(HOLE), text, 1)


DEEP = 100_000
REPLACEMENTS = [
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1.5",
    "1e400",  # inf
    "-1e400",
    "NaN",
    "Infinity",
    "123456789012345678901234567890",
    "9" * 5000,  # more digits than int() takes
    '""',
    '"\\ud800"',  # a lone surrogate
    '"\\u0000"',
    '"' + "x" * 1_000_000 + '"',
    '"2026-11-01T09:00:00Z"',
    "[]",
    "{}",
    '[{"a": 1}]',
    '{"a": [1, {"b": null}]}',
    "[" * 400 + "]" * 400,  # deep, but the parser takes it: nothing of ours may recurse on it
    '{"a":' * 400 + "1" + "}" * 400,
    "[" * DEEP + "]" * DEEP,  # the parser's RecursionError
    '{"a":' * DEEP + "1" + "}" * DEEP,
]


@pytest.mark.parametrize("name", BY_NAME)
def test_every_field_replaced_by_every_json_value_or_removed(guard: SyncGuard, name: str) -> None:
    provider = BY_NAME[name]
    tried = 0
    for path in paths(provider.valid):
        for text in [*REPLACEMENTS, None]:
            if text is None and not path:
                continue
            headers, body = provider.wrap(with_text(provider.valid, path, text))
            attack(guard, provider, headers, body, signed=True)
            tried += 1
    assert tried > 10 * len(REPLACEMENTS)


MAILGUN_SIGNATURE = json.loads(mailgun.signed(mailgun.FAILED))
SNS_ENVELOPE = json.loads(ses.sns("Notification", ses.BOUNCE))


@pytest.mark.parametrize(
    ("name", "envelope"), [("mailgun", MAILGUN_SIGNATURE), ("ses", SNS_ENVELOPE)]
)
def test_every_field_of_a_signed_envelope_replaced_is_refused_as_unauthenticated(
    guard: SyncGuard, name: str, envelope: dict[str, Any]
) -> None:
    provider = BY_NAME[name]
    for path in paths(envelope):
        if not path or path[0] == "event-data":
            continue
        for text in [*REPLACEMENTS, None]:
            body = with_text(envelope, path, text).encode("utf-8", "surrogatepass")
            found = outcome(provider, {}, body)
            assert found is WebhookAuthError, (path, text[:40] if text else text, found)
            assert handle_sync(guard, provider.verify, {}, body).status == 401


RAW_BODIES = [
    b"",
    b" ",
    b"\xff\xfe\xfd",
    b"\x80abc",
    '{"a": "\xe9"}'.encode("latin-1"),
    json.dumps({"a": 1}).encode("utf-16"),
    b"\x00" * 1000,
    b"not json",
    b"{",
    b"[]",
    b"{}",
    b"null",
    b"0",
    b'"a string"',
    b"[" * DEEP + b"]" * DEEP,
    b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    b"[" * DEEP,
    b"signature=abc&token=def&timestamp=1&event-data=x",  # form-encoded
    b'--boundary\r\nContent-Disposition: form-data; name="token"\r\n\r\nx\r\n--boundary--',
    b'{"signature": ' * 50_000,
    json.dumps({"x": "y" * 8_000_000}).encode(),
]


@pytest.mark.parametrize("name", BY_NAME)
@pytest.mark.parametrize("index", range(len(RAW_BODIES)))
def test_raw_bodies(guard: SyncGuard, name: str, index: int) -> None:
    provider = BY_NAME[name]
    body = RAW_BODIES[index]
    headers, _ = provider.unauthenticated(body)
    headers = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
    found = outcome(provider, headers, body)
    assert found is WebhookAuthError  # never "malformed": nothing here authenticated
    assert handle_sync(guard, provider.verify, headers, body).status == 401
    if name in ("sendgrid", "postmark"):  # the credentials are outside the body
        signed_headers, signed_body = provider.wrap(body.decode("utf-8", "surrogateescape"))
        if signed_body == body:
            attack(guard, provider, signed_headers, body, signed=True)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic \u00e9\u00e9"},
        {"Authorization": "Basic " + "A" * 1_000_000},
        {"Authorization": "\udcff"},
        {SIGNATURE_HEADER: "\u00e9", TIMESTAMP_HEADER: "\u0663"},
        {SIGNATURE_HEADER: "AAAA", TIMESTAMP_HEADER: "9" * 5000},
        {SIGNATURE_HEADER: "A" * 1_000_001, TIMESTAMP_HEADER: "1e9"},
        {SIGNATURE_HEADER: "", TIMESTAMP_HEADER: ""},
    ],
)
@pytest.mark.parametrize("name", ["sendgrid", "postmark"])
def test_header_credentials_of_any_shape_are_refused(
    guard: SyncGuard, name: str, headers: dict[str, str]
) -> None:
    provider = BY_NAME[name]
    body = json.dumps(provider.valid).encode()
    assert outcome(provider, headers, body) is WebhookAuthError
    assert handle_sync(guard, provider.verify, headers, body).status == 401


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def mutated(valid: Any) -> st.SearchStrategy[str]:
    """The valid payload with some fields replaced by arbitrary JSON, removed, or added."""
    every = list(paths(valid))

    @st.composite
    def build(draw: st.DrawFn) -> str:
        value = copy.deepcopy(valid)
        for _ in range(draw(st.integers(1, 3))):
            path = draw(st.sampled_from(every))
            parent, key = value, None
            try:
                for step in path[:-1]:
                    parent = parent[step]
                key = path[-1] if path else None
                if key is None:
                    value = draw(json_values)
                elif draw(st.booleans()):
                    parent[key] = draw(json_values)
                else:
                    del parent[key]
            except (KeyError, IndexError, TypeError):
                continue  # an earlier mutation took this path away
        return json.dumps(value)

    return build()


@pytest.mark.parametrize("name", BY_NAME)
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_hypothesis_mutations_of_valid_payloads(
    guard: SyncGuard, name: str, data: st.DataObject
) -> None:
    provider = BY_NAME[name]
    text = data.draw(mutated(provider.valid) | json_values.map(json.dumps))
    headers, body = provider.wrap(text)
    attack(guard, provider, headers, body, signed=True)


@pytest.mark.parametrize("name", BY_NAME)
@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_hypothesis_bodies_without_credentials(name: str, body: bytes) -> None:
    provider = BY_NAME[name]
    headers, _ = provider.unauthenticated(body)
    assert outcome(provider, headers, body) is WebhookAuthError


@pytest.mark.parametrize("name", ["mailgun", "sendgrid", "postmark"])
def test_a_huge_diagnostic_costs_what_a_short_one_does(guard: SyncGuard, name: str) -> None:
    """Linear in the input, whoever sends it: a 4 MB diagnostic is read no further than 2000."""
    provider = BY_NAME[name]
    timings = []
    for size in (1_000_000, 4_000_000):
        long = "550 5.1.1 " + "x" * size
        payload = copy.deepcopy(provider.valid)
        if name == "mailgun":
            payload["delivery-status"]["message"] = long
        elif name == "sendgrid":
            payload[0]["reason"] = long
        else:
            payload["Details"] = long
        headers, body = provider.wrap(json.dumps(payload))
        started = time.perf_counter()
        attack(guard, provider, headers, body, signed=True)
        timings.append(time.perf_counter() - started)
    assert timings[1] < 2.0, timings  # the classifier alone took ~9 s over 4 MB

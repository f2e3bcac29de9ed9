"""A framework's message kept for later comes back as the message the app built."""

from __future__ import annotations

import datetime as dt
import json
from email.mime.text import MIMEText
from typing import Any

import pytest
from anymail.message import AnymailMessage
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.utils.translation import gettext_lazy

from sendguard import ConfigurationError
from sendguard._framework_message import freeze, thaw

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def rich_message() -> AnymailMessage:
    message = AnymailMessage(
        subject=gettext_lazy("Your order"),
        body="Plain text, ünïcode.",
        from_email="Shop <shop@s.example>",
        to=["Ann <ann@x.example>"],
        cc=["cc@x.example"],
        bcc=["audit@s.example"],
        reply_to=["help@s.example"],
        headers={"X-Campaign": "autumn", "List-Id": "<news.s.example>"},
        tags=["order", "receipt"],
        metadata={"order": 42, "nested": {"a": [1, 2]}},
        merge_global_data={"name": "Ann"},
        track_clicks=False,
    )
    message.send_at = dt.datetime(2026, 12, 8, 9, 30, tzinfo=dt.UTC)
    message.attach_alternative("<p>Plain <b>html</b></p>", "text/html")
    message.attach("invoice.pdf", b"%PDF-1.4 \x00\x01\xff", "application/pdf")
    message.attach("notes.txt", "text attachment", "text/plain")
    message.attach(MIMEText("an inline MIME part", "plain", "utf-8"))
    return message


def test_an_anymail_message_comes_back_with_every_attribute() -> None:
    original = rich_message()
    again: Any = thaw(freeze(original), base=EmailMessage)
    assert type(again) is AnymailMessage
    for name in (
        "body", "from_email", "to", "cc", "bcc", "reply_to", "extra_headers", "tags",
        "metadata", "merge_global_data", "track_clicks", "send_at",
    ):  # fmt: skip
        assert getattr(again, name) == getattr(original, name), name
    assert again.subject == "Your order"
    assert again.alternatives == original.alternatives
    assert type(again.alternatives[0]) is type(original.alternatives[0])
    assert again.attachments[:2] == original.attachments[:2]
    assert again.attachments[2].get_payload(decode=True) == b"an inline MIME part"
    assert again.connection is None
    assert again.anymail_status.recipients == {}

    # The MIME it builds is the original's, but for the headers made per call.
    def stable(m: EmailMessage) -> list[str]:
        text = m.message().as_string().splitlines()
        return [
            line for line in text
            if not line.startswith(("Date:", "Message-ID:", "Content-Type: multipart", "--="))
            and "boundary" not in line
        ]  # fmt: skip

    assert stable(again) == stable(original)


def test_a_plain_multi_alternatives_message_round_trips() -> None:
    original = EmailMultiAlternatives("Hi", "text", "a@s.example", ["b@x.example"])
    original.attach_alternative("<p>hi</p>", "text/html")
    again: Any = thaw(freeze(original), base=EmailMessage)
    assert type(again) is EmailMultiAlternatives
    assert again.alternatives == original.alternatives


def test_a_value_without_a_json_form_is_left_out_not_fatal() -> None:
    original = AnymailMessage("Hi", "Body", "a@s.example", ["b@x.example"])
    original.esp_extra = lambda payload: payload  # anymail allows a callable here
    again: Any = thaw(freeze(original), base=EmailMessage)
    assert not hasattr(again, "esp_extra")
    assert again.subject == "Hi"


@pytest.mark.parametrize(
    "klass",
    [
        "os:system",  # imported, but not a message class
        "no_such_module_anywhere:EmailMessage",  # never imported: never imported by thaw
        "builtins:dict",
    ],
)
def test_thaw_never_builds_what_the_integration_does_not_allow(klass: str) -> None:
    kept = json.dumps({"class": klass, "state": {"subject": "x"}})
    with pytest.raises(ConfigurationError):
        thaw(kept, base=EmailMessage)


def test_thaw_refuses_a_named_tuple_that_is_no_tuple_and_garbage() -> None:
    kept = json.dumps(
        {
            "class": "django.core.mail.message:EmailMessage",
            "state": {"alternatives": [{"$t": ["x"], "cls": "os:system"}]},
        }
    )
    with pytest.raises(ConfigurationError):
        thaw(kept, base=EmailMessage)
    for garbage in ("", "[]", '{"class": 1}', '{"class": "a:b"}'):
        with pytest.raises(ConfigurationError):
            thaw(garbage, base=EmailMessage)


def test_a_subclass_the_worker_has_not_imported_comes_back_as_its_nearest_base() -> None:
    original = AnymailMessage("Hi", "Body", "a@s.example", ["b@x.example"], tags=["t"])
    kept = json.loads(freeze(original))
    # As the app's own subclass, in a module the worker process never imported.
    kept["class"], anymail_message = "shop.emails_not_imported:WelcomeEmail", kept["class"]
    kept["bases"] = ["shop.emails_not_imported:Branded", anymail_message, *kept["bases"]]
    again: Any = thaw(json.dumps(kept), base=EmailMessage)
    assert type(again) is AnymailMessage
    assert again.tags == ["t"]

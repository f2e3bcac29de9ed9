"""Django's send_mail through sendguard, against a local SMTP server that knows no "gone".

Run: python3 dev.py run python examples/django_project/demo.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from sendguard.testing import ScriptedSMTPServer


def main() -> None:
    with ScriptedSMTPServer().in_thread() as server, tempfile.TemporaryDirectory() as base:
        server.script("gone@example.com", "550 5.1.1 <gone@example.com>: User unknown")
        os.environ["EMAIL_PORT"] = str(server.port)
        os.environ["EXAMPLE_BASE_DIR"] = base  # the list is kept in sendguard.db there
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        os.environ["DJANGO_SETTINGS_MODULE"] = "settings"  # this project's, whatever is set
        import django  # noqa: PLC0415 (after the settings are chosen)

        django.setup()
        from django.core import mail  # noqa: PLC0415
        from sendguard_django import get_guard, reset_guard  # noqa: PLC0415

        from sendguard import NotSentError  # noqa: PLC0415

        first = mail.send_mail("Hello", "Hi!", None, ["ok@example.com", "gone@example.com"])
        print(f"first send: {first} message sent; the server accepted {server.accepted}")
        print(f"gone@example.com suppressed: {get_guard().is_suppressed('gone@example.com')}")
        reset_guard()  # as if the process restarted: the list is in the file, not in memory
        server.rcpt_log.clear()
        message = mail.EmailMessage("Again", "Hi!", None, ["gone@example.com"])
        try:
            sent = message.send()
        except NotSentError as exc:  # it reached no one (and was not kept for later)
            sent = 0
            print(f"second send: not sent ({exc})")
        print(f"second send: {sent} sent, RCPT TO seen: {server.rcpt_log or 'none'}")
        for address, rr in message.sendguard_result.recipients.items():
            print(f"  {address}: {rr.status.value} ({rr.detail})")
        reset_guard()


if __name__ == "__main__":
    main()

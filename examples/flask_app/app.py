"""A Flask app whose Flask-Mailman sends go through sendguard (an app factory).

Run: python3 dev.py run python examples/flask_app/app.py   (a demo with a local SMTP server)
"""

from __future__ import annotations

import tempfile

import flask_mailman
from flask import Flask
from sendguard_flask import SendGuard, current_guard

from sendguard import NotSentError
from sendguard.testing import ScriptedSMTPServer

mail = flask_mailman.Mail()
guard = SendGuard()


def create_app(instance_path: str | None = None, **config: object) -> Flask:
    """The app factory: extensions first, then the views.

    With no store configured, the suppression list is ``sendguard.db`` in the instance folder.
    """
    app = Flask(__name__, instance_path=instance_path)
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_DEFAULT_SENDER="news@shop.example")
    app.config.update(config)
    guard.init_app(app)
    mail.init_app(app)

    @app.post("/invite/<address>")
    def invite(address: str) -> dict[str, object]:
        message = flask_mailman.EmailMessage("You are invited", "Come along!", None, [address])
        try:
            sent = message.send()  # kept for later (over the cap, deferred) counts as sent
        except NotSentError:  # it reached no one: refused, suppressed, invalid
            sent = 0
        rr = message.sendguard_result.recipients
        return {"sent": sent, "status": {a: r.status.value for a, r in rr.items()}}

    return app


def main() -> None:
    with ScriptedSMTPServer().in_thread() as server, tempfile.TemporaryDirectory() as instance:
        server.script("gone@example.com", "550 5.1.1 <gone@example.com>: User unknown")
        app = create_app(instance, MAIL_PORT=server.port)  # a scratch list, for a fresh demo
        client = app.test_client()
        for address in ("ok@example.com", "gone@example.com", "gone@example.com"):
            print(f"POST /invite/{address} -> {client.post(f'/invite/{address}').get_json()}")
        print(f"the server accepted: {server.accepted}")
        current_guard(app).close()


if __name__ == "__main__":
    main()

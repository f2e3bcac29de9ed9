"""sendguard for Flask: ``SendGuard(app)`` guards every e-mail the app sends.

Configuration comes from ``app.config``: every ``SENDGUARD_*`` key of :mod:`sendguard.config`
(``SENDGUARD_STORE``, ``SENDGUARD_WARMUP``, ``SENDGUARD_RULES``, ...; absent a store:
``sendguard.db`` in the app's instance folder), read the same as Django's ``SENDGUARD`` keys,
an unknown one an error; ``SENDGUARD_BACKEND`` names a Flask-Mailman backend to send through.
Without it the SMTP server is the one Flask-Mail and Flask-Mailman use (``MAIL_SERVER``,
``MAIL_PORT``, ``MAIL_USE_TLS``, ``MAIL_USE_SSL``, ``MAIL_USERNAME``, ``MAIL_PASSWORD``,
``MAIL_TIMEOUT``).

Flask-Mailman sends through :class:`sendguard_flask.mailman.EmailBackend` (``MAIL_BACKEND``
is set to it unless the app chose one); Flask-Mail's connections hand their SMTP work to the
guard.  Either way each send's :class:`sendguard.SendResult` is appended to
``flask.g.sendguard_results``.  ``flask sendguard ...`` is the sendguard command line.
"""

from __future__ import annotations

import atexit
import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer.main
from blinker import Namespace
from flask import Blueprint, Flask, Response, current_app, g, request

from sendguard import (
    ConfigurationError,
    Guard,
    OutboxEvent,
    SendResult,
    SMTPAdapter,
    SyncGuard,
)
from sendguard import config as sendguard_config
from sendguard._perprocess import PerProcess
from sendguard.cli import Defaults
from sendguard.cli import app as cli_app
from sendguard.webhooks import Verify, handle_sync

__all__ = [
    "SendGuard",
    "app_store_url",
    "current_guard",
    "kept_setting",
    "mail_delivered",
    "mail_expired",
    "mail_failed",
    "mail_kept",
    "webhook_blueprint",
]

_signals = Namespace()
mail_kept = _signals.signal("sendguard-mail-kept")
"""A recipient was held back and kept in the outbox (``event``: a sendguard.OutboxEvent)."""
mail_delivered = _signals.signal("sendguard-mail-delivered")
"""A kept recipient was delivered by a worker (``event``)."""
mail_failed = _signals.signal("sendguard-mail-failed")
"""A kept recipient was refused for good when a worker sent it (``event``)."""
mail_expired = _signals.signal("sendguard-mail-expired")
"""A kept recipient was given up after ``SENDGUARD_MAX_AGE`` (``event``)."""
_OUTBOX_SIGNALS = {
    "kept": mail_kept,
    "delivered": mail_delivered,
    "failed": mail_failed,
    "expired": mail_expired,
}
__version__ = "0.1.0"

MAILMAN_BACKEND = "sendguard_flask.mailman.EmailBackend"


class SendGuard:
    """The Flask extension; one :class:`sendguard.SyncGuard` per app."""

    def __init__(self, app: Flask | None = None) -> None:
        self.app = app
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register with *app*: its guard, the mail integrations and the CLI group."""
        if "sendguard" in app.extensions:
            raise ConfigurationError(
                "sendguard is already registered on this app: call init_app once"
            )
        url = app_store_url(app)
        config = app.config
        settings = _settings(config)

        def options() -> dict[str, Any]:
            made = _options(config)
            if settings.extra.get("BACKEND"):  # any Flask-Mailman backend is an adapter
                made["adapter"] = _backend_adapter(app, settings.extra["BACKEND"])

            def tell(event: OutboxEvent) -> None:
                signal = _OUTBOX_SIGNALS.get(event.kind)
                if signal is not None:
                    signal.send(app, event=event)

            return {**made, "on_outbox": tell, "store": _settings(config).open_store(url)}

        def build() -> SyncGuard:
            return SyncGuard(**options())

        def worker_guard() -> Guard:
            return Guard(**options())

        guards = PerProcess(build, eager=True)  # built now: a bad setting fails here
        app.extensions["sendguard"] = guards
        atexit.register(guards.close)
        app.config.setdefault("MAIL_BACKEND", MAILMAN_BACKEND)
        mailman = app.extensions.get("mailman")
        if mailman is not None:  # Flask-Mailman registered first: it read MAIL_BACKEND already
            mailman.backend = app.config["MAIL_BACKEND"]
        _guard_flask_mail()
        command = typer.main.get_command(cli_app)
        command.name = "sendguard"
        command.context_settings = {
            **command.context_settings,
            # `flask sendguard`: the app's options, and its guard for `flask sendguard worker`.
            "obj": replace(Defaults.from_settings(settings, url), guard=worker_guard),
        }
        app.cli.add_command(command)  # type: ignore[arg-type]  # typer vendors click

    @property
    def guard(self) -> SyncGuard:
        """The guard of this extension's app (or of the current app)."""
        return current_guard(self.app)


def current_guard(app: Flask | None = None) -> SyncGuard:
    """The guard of *app*, or of the current app (this process's: see ``PerProcess``)."""
    target = app if app is not None else current_app
    guards: PerProcess = target.extensions["sendguard"]
    return guards.get()


def webhook_blueprint(name: str, verify: Verify, *, url_prefix: str = "") -> Blueprint:
    """A blueprint with one POST route (``<url_prefix>/``) for an ESP's webhook.

    ``app.register_blueprint(webhook_blueprint("postmark", partial(parse_webhook,
    credentials=[...]), url_prefix="/hooks/postmark"))``: each request is verified, recorded
    by the app's guard, and only then acknowledged (401 refused, 503 not stored).
    """
    blueprint = Blueprint(f"sendguard_{name}", __name__, url_prefix=url_prefix)

    @blueprint.post("/")
    def receive() -> Response:
        answer = handle_sync(current_guard(), verify, dict(request.headers), request.get_data())
        return Response(answer.body, status=answer.status, mimetype="text/plain")

    return blueprint


def record(result: SendResult) -> None:
    """Keep *result* in ``g.sendguard_results`` when there is an app context."""
    with contextlib.suppress(RuntimeError):  # outside an application context: nowhere to keep it
        g.setdefault("sendguard_results", []).append(result)


def app_store_url(app: Flask) -> str:
    """The store URL of *app*.

    ``SENDGUARD_STORE``, else ``SENDGUARD_REDIS_URL`` (with ``SENDGUARD_CLUSTER``), else a
    SQLite file ``sendguard.db`` in the app's instance folder.
    """
    default = Path(app.instance_path) / "sendguard.db"
    url = _settings(app.config).store_url(f"sqlite:///{default}")
    if url == f"sqlite:///{default}":
        default.parent.mkdir(parents=True, exist_ok=True)  # Flask leaves that to the app
    return url


def _settings(config: Any) -> sendguard_config.Settings:  # noqa: ANN401 (Flask's Config)
    """The app's ``SENDGUARD_*`` keys, read by :mod:`sendguard.config` (typos are errors)."""
    settings = sendguard_config.from_prefixed(
        config, "SENDGUARD_", extra=("BACKEND", "KEPT", "NOT_SENT")
    )
    kept_setting(config)
    return settings


def kept_setting(config: Any) -> tuple[str, str]:  # noqa: ANN401 (Flask's Config)
    """``SENDGUARD_KEPT`` (sent or raise) and ``SENDGUARD_NOT_SENT`` (raise or ignore).

    Whether a message kept for later counts as sent, and whether one that reached no recipient
    raises :class:`sendguard.NotSentError`.
    """
    kept = config.get("SENDGUARD_KEPT", "sent")
    not_sent = config.get("SENDGUARD_NOT_SENT", "raise")
    if kept not in ("sent", "raise") or not_sent not in ("raise", "ignore"):
        raise ConfigurationError(
            f"SENDGUARD_KEPT must be 'sent' or 'raise' (not {kept!r}) and SENDGUARD_NOT_SENT "
            f"'raise' or 'ignore' (not {not_sent!r})"
        )
    return str(kept), str(not_sent)


def _options(config: Any) -> dict[str, Any]:  # noqa: ANN401 (Flask's Config)
    login = bool(config.get("MAIL_USERNAME") and config.get("MAIL_PASSWORD"))
    options: dict[str, Any] = {
        "adapter": SMTPAdapter(
            config.get("MAIL_SERVER", "localhost"),
            int(config.get("MAIL_PORT", 25)),
            username=config.get("MAIL_USERNAME") if login else None,
            password=config.get("MAIL_PASSWORD") if login else None,
            use_tls=bool(config.get("MAIL_USE_SSL", False)),
            start_tls=bool(config.get("MAIL_USE_TLS", False)),
            timeout=float(config.get("MAIL_TIMEOUT") or 60),
        )
    }
    return {**options, **_settings(config).options}


def _backend_adapter(app: Flask, backend: object) -> Any:  # noqa: ANN401 (BackendAdapter)
    try:
        from sendguard_flask.mailman import BackendAdapter  # noqa: PLC0415 (optional)
    except ImportError as exc:
        raise ConfigurationError(f"SENDGUARD_BACKEND: {exc}") from exc
    return BackendAdapter(app, backend)


def _guard_flask_mail() -> None:
    """Make Flask-Mail's connections deliver through the guard of a guarded app (once)."""
    try:
        import flask_mail  # noqa: PLC0415 (optional)
    except ImportError:
        return
    from sendguard_flask._flask_mail import patch  # noqa: PLC0415

    patch(flask_mail)

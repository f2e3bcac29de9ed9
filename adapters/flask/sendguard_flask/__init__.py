"""sendguard for Flask: ``SendGuard(app)`` guards every e-mail the app sends.

Configuration comes from ``app.config``: ``SENDGUARD_STORE`` (a store URL:
``sqlite:///path``, ``redis://...``, ``memory://``) or ``SENDGUARD_REDIS_URL`` (absent both:
``sendguard.db`` in the app's instance folder), ``SENDGUARD_PREFIX``, ``SENDGUARD_CLUSTER``,
``SENDGUARD_RETRY`` (RetryPolicy options), ``SENDGUARD_WARMUP`` (a WarmupSchedule),
``SENDGUARD_SHAPING`` (limits), ``SENDGUARD_BREAKER`` (Breaker options) and
``SENDGUARD_BOUNCE_SECRET``; the SMTP server is the one Flask-Mail and Flask-Mailman use
(``MAIL_SERVER``, ``MAIL_PORT``, ``MAIL_USE_TLS``, ``MAIL_USE_SSL``, ``MAIL_USERNAME``,
``MAIL_PASSWORD``, ``MAIL_TIMEOUT``).

Flask-Mailman sends through :class:`sendguard_flask.mailman.EmailBackend` (``MAIL_BACKEND``
is set to it unless the app chose one); Flask-Mail's connections hand their SMTP work to the
guard.  Either way each send's :class:`sendguard.SendResult` is appended to
``flask.g.sendguard_results``.  ``flask sendguard ...`` is the sendguard command line.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer.main
from flask import Blueprint, Flask, Response, current_app, g, request

from sendguard import (
    Breaker,
    ConfigurationError,
    RetryPolicy,
    SendResult,
    Shaping,
    SMTPAdapter,
    SyncGuard,
    WarmupSchedule,
    open_store,
    store_url,
)
from sendguard._cli import Defaults
from sendguard._cli import app as cli_app
from sendguard.webhooks import Verify, handle_sync

__all__ = ["SendGuard", "app_store_url", "current_guard", "webhook_blueprint"]
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

        def build() -> SyncGuard:
            options = _options(config)
            if config.get("SENDGUARD_BACKEND"):  # any Flask-Mailman backend is an adapter
                options["adapter"] = _backend_adapter(app, config["SENDGUARD_BACKEND"])
            return SyncGuard(**options, store=open_store(url, prefix=_prefix(config)))

        guards = _PerProcess(build)  # built now: a bad setting fails here, not at a send
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
            "obj": Defaults(url, _prefix(app.config)),  # `flask sendguard` works on this store
        }
        app.cli.add_command(command)  # type: ignore[arg-type]  # typer vendors click

    @property
    def guard(self) -> SyncGuard:
        """The guard of this extension's app (or of the current app)."""
        return current_guard(self.app)


def current_guard(app: Flask | None = None) -> SyncGuard:
    """The guard of *app*, or of the current app (this process's: see :class:`_PerProcess`)."""
    target = app if app is not None else current_app
    guards: _PerProcess = target.extensions["sendguard"]
    return guards.get()


class _PerProcess:
    """One SyncGuard per process of an app.

    A guard's thread and connections do not survive a fork: a prefork server that loads the
    app before forking its workers (``gunicorn --preload``, uWSGI without ``lazy-apps``) gives
    each worker a fresh guard, built from the same settings on the worker's first use.
    """

    def __init__(self, build: Callable[[], SyncGuard]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._guard = build()
        os.register_at_fork(after_in_child=self._forked)

    def _forked(self) -> None:
        self._lock = threading.Lock()  # the parent's may have been held by one of its threads

    def get(self) -> SyncGuard:
        """The guard of this process."""
        if self._guard.forked:
            with self._lock:
                if self._guard.forked:
                    self._guard = self._build()
        return self._guard

    def close(self) -> None:
        """Close this process's guard (a parent's, seen from a child, is left to the parent)."""
        self._guard.close()


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
    url = store_url(
        app.config.get("SENDGUARD_STORE"),
        app.config.get("SENDGUARD_REDIS_URL"),
        cluster=bool(app.config.get("SENDGUARD_CLUSTER")),
        default=f"sqlite:///{default}",
    )
    if url == f"sqlite:///{default}":
        default.parent.mkdir(parents=True, exist_ok=True)  # Flask leaves that to the app
    return url


def _prefix(config: Any) -> str:  # noqa: ANN401 (Flask's Config)
    return str(config.get("SENDGUARD_PREFIX") or "sendguard")


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
    if config.get("SENDGUARD_RETRY"):
        options["retry"] = RetryPolicy(**config["SENDGUARD_RETRY"])
    warmup = config.get("SENDGUARD_WARMUP")
    if warmup is not None:
        if not isinstance(warmup, WarmupSchedule):
            raise ConfigurationError(
                f"SENDGUARD_WARMUP must be a sendguard.WarmupSchedule, not {warmup!r}"
            )
        options["warmup"] = warmup
    if config.get("SENDGUARD_SHAPING"):
        options["shaping"] = Shaping(config["SENDGUARD_SHAPING"])
    if config.get("SENDGUARD_BREAKER") is not None:
        options["breaker"] = Breaker(**config["SENDGUARD_BREAKER"])
    if config.get("SENDGUARD_BOUNCE_SECRET"):
        options["bounce_secret"] = config["SENDGUARD_BOUNCE_SECRET"]
    return options


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

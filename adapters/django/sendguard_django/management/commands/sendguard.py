"""``manage.py sendguard ...``: the sendguard command line, with the project's settings."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from sendguard.cli import Defaults, app
from sendguard_django._config import config, project_store_url, read, worker_guard


class Command(BaseCommand):
    """Runs ``sendguard`` on the project's store (``--store`` and ``--redis-url`` still win)."""

    help = "The sendguard command line (suppress, status, resume, classify, ingest, ...)."

    def add_arguments(self, parser: CommandParser) -> None:
        """Everything after ``sendguard`` goes to the sendguard CLI as it is."""
        # REMAINDER: call_command("sendguard", "worker", "--once") passes its options too.
        parser.add_argument("args", nargs=argparse.REMAINDER)

    def run_from_argv(self, argv: list[str]) -> None:
        """Hand the rest of the command line to the sendguard CLI, untouched by argparse."""
        self.handle(*argv[2:])

    def handle(self, *args: str, **_: Any) -> None:  # noqa: ANN401
        """Run the CLI; its exit status becomes this command's."""
        conf = config()
        defaults = replace(
            Defaults.from_settings(read(conf), project_store_url(conf)),
            guard=worker_guard,  # `manage.py sendguard worker` sends with the project's guard
        )
        app(args=list(args), prog_name="manage.py sendguard", obj=defaults)

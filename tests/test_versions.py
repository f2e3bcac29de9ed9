"""The distributions move in lockstep until 1.0: one version everywhere."""

from __future__ import annotations

import tomllib
from pathlib import Path

import sendguard_django
import sendguard_flask
import sendguard_mailgun
import sendguard_postmark
import sendguard_sendgrid
import sendguard_ses

import sendguard

ROOT = Path(__file__).resolve().parent.parent


def test_every_distribution_has_the_same_version_and_pins_the_core() -> None:
    core = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert core["version"] == sendguard.__version__
    adapters = (
        ("django", sendguard_django),
        ("flask", sendguard_flask),
        ("postmark", sendguard_postmark),
        ("mailgun", sendguard_mailgun),
        ("sendgrid", sendguard_sendgrid),
        ("ses", sendguard_ses),
    )
    for name, module in adapters:
        project = tomllib.loads((ROOT / "adapters" / name / "pyproject.toml").read_text())
        assert project["project"]["version"] == core["version"] == module.__version__
        assert f"sendguard=={core['version']}" in project["project"]["dependencies"]

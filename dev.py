#!/usr/bin/env python3
"""Developer entry point that works on a fresh clone with nothing but Python 3.11+.

    python3 dev.py demo      run examples/quickstart.py (no Redis needed)
    python3 dev.py test      run the test suite (extra arguments go to pytest)
    python3 dev.py check     ruff and mypy --strict
    python3 dev.py alone     each adapter installed alone in a fresh venv, then imported
    python3 dev.py run ...   run any command in the project environment

The environment is .venv, synced from uv.lock with uv.  When uv is not on PATH it is
installed from PyPI into .tools/ first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TOOLS = ROOT / ".tools"


def uv() -> str:
    """The uv executable: from PATH, else installed into .tools/."""
    found = shutil.which("uv")
    if found:
        return found
    binary = TOOLS / ("Scripts" if os.name == "nt" else "bin") / "uv"
    if not binary.exists():
        print("dev.py: installing uv into .tools/ ...", file=sys.stderr)
        venv.create(TOOLS, with_pip=True)
        pip = binary.with_name("pip")
        subprocess.run([str(pip), "install", "--quiet", "uv>=0.5"], check=True)  # noqa: S603
    return str(binary)


def in_env(*command: str) -> int:
    """Sync .venv from uv.lock, then run *command* in it; its exit status."""
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(ROOT / ".venv")}
    tool = uv()
    sync = [tool, "sync", "--frozen", "--all-packages", "--quiet"]
    subprocess.run(sync, cwd=ROOT, env=env, check=True)  # noqa: S603
    run = [tool, "run", "--frozen", "--no-sync", *command]
    return subprocess.run(run, cwd=ROOT, env=env, check=False).returncode  # noqa: S603


# What each adapter must import with only its own dependencies, and what an optional extra
# that is missing must say.
ADAPTERS = {
    "django": (
        "import sendguard_django, sendguard_django.backend, sendguard_django.signals\n"
        "assert not sendguard_django.signals.connect()  # no anymail: no receivers"
    ),
    "flask": (
        "import sendguard_flask, sendguard_flask._flask_mail\n"
        "try:\n    import sendguard_flask.mailman\n"
        "except ImportError as exc:\n    assert 'sendguard-flask[mailman]' in str(exc)\n"
        "else:\n    raise SystemExit('flask_mailman came from somewhere')"
    ),
    "postmark": "import sendguard_postmark",
    "mailgun": "import sendguard_mailgun",
    "sendgrid": "import sendguard_sendgrid",
    "ses": "import sendguard_ses",
}


def alone() -> int:
    """Install each adapter with only what it declares, in a venv of its own; import it.

    In the shared environment an adapter could import something it never declared; here it
    cannot.
    """
    tool = uv()
    for name, probe in ADAPTERS.items():
        with tempfile.TemporaryDirectory() as scratch:
            env = Path(scratch) / "venv"
            subprocess.run([tool, "venv", "--quiet", str(env)], check=True)  # noqa: S603
            python = env / ("Scripts" if os.name == "nt" else "bin") / "python"
            install = [tool, "pip", "install", "--quiet", "--python", str(python)]
            subprocess.run([*install, str(ROOT), str(ROOT / "adapters" / name)], check=True)  # noqa: S603
            done = subprocess.run([str(python), "-c", probe], check=False)  # noqa: S603
            if done.returncode:
                return done.returncode
            print(f"dev.py: sendguard-{name} imports alone")
    return 0


def main(argv: list[str]) -> int:
    """Run the task named first in *argv*."""
    task, *rest = argv or ["help"]
    if task == "demo":
        return in_env("python", "examples/quickstart.py")
    if task == "test":
        return in_env("pytest", *rest)
    if task == "check":
        return (
            in_env("ruff", "check", ".")
            or in_env("ruff", "format", "--check", ".")
            or in_env("mypy")
        )
    if task == "run" and rest:
        return in_env(*rest)
    if task == "alone":
        return alone()
    print(__doc__)
    return 0 if task in ("help", "-h", "--help") else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

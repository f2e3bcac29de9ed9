#!/usr/bin/env python3
"""Developer entry point that works on a fresh clone with nothing but Python 3.11+.

    python3 dev.py demo      run examples/quickstart.py (no Redis needed)
    python3 dev.py test      run the test suite (extra arguments go to pytest)
    python3 dev.py check     ruff and mypy --strict
    python3 dev.py run ...   run any command in the project environment

The environment is .venv, synced from uv.lock with uv.  When uv is not on PATH it is
installed from PyPI into .tools/ first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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
    print(__doc__)
    return 0 if task in ("help", "-h", "--help") else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``python -m sendguard``: the command line interface."""

from sendguard.cli import main

main()

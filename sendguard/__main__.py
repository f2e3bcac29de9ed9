"""``python -m sendguard``: the command line interface."""

from sendguard._cli import main

main()

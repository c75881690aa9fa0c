"""`python -m bbackup`."""

from bbackup.cli.app import main

main()

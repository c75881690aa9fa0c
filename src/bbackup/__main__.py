"""`python -m bbackup`."""

from bbackup.cli.early import main

main()

#!/usr/bin/env bash
# Sets up a virtualenv with the project and its dev extras, then runs every quality gate:
# ruff (lint + format), mypy --strict on src/, import-linter layer contracts, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
# `bbackup mount`'s tests need the system's libfuse: install it where we can (root on
# Debian); elsewhere those tests skip and say how.
if [ "$(id -u)" = 0 ]; then scripts/install-fuse.sh || true; fi

echo "== ruff check";          ruff check src tests scripts
echo "== ruff format --check"; ruff format --check src tests scripts
echo "== mypy --strict src";   mypy
echo "== import-linter";       lint-imports
# Two workers: the suite is mostly subprocesses and moto round trips, so it runs in about
# two thirds of the single-process time on the 2-core CI machine.
echo "== pytest";              pytest -q -p no:cacheprovider -n "${BBACKUP_TEST_WORKERS:-2}" "$@"

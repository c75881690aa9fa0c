#!/usr/bin/env bash
# Sets up a virtualenv with the project and its dev extras, then runs every quality gate:
# ruff (lint + format), mypy --strict on src/, import-linter layer contracts, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh

echo "== ruff check";          ruff check src tests scripts
echo "== ruff format --check"; ruff format --check src tests scripts
echo "== mypy --strict src";   mypy
echo "== import-linter";       lint-imports
echo "== pytest";              pytest -q -p no:cacheprovider "$@"

#!/usr/bin/env bash
# Sets up a virtualenv with the project and its dev extras, then runs every quality gate:
# ruff (lint + format), mypy --strict on src/, import-linter layer contracts, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${BBACKUP_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e ".[dev]"
export PATH="$PWD/$VENV/bin:$PATH"

echo "== ruff check";          ruff check src tests scripts
echo "== ruff format --check"; ruff format --check src tests scripts
echo "== mypy --strict src";   mypy
echo "== import-linter";       lint-imports
echo "== pytest";              pytest -q -p no:cacheprovider "$@"

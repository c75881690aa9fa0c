# Sourced by scripts/test.sh and scripts/demo.sh: create .venv (or $BBACKUP_VENV) on first
# use, install the project with its dev extras, and put the venv first on PATH.
PY=${PYTHON:-python3}
VENV=${BBACKUP_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e ".[dev]"
export PATH="$PWD/$VENV/bin:$PATH"

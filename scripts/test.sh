#!/usr/bin/env bash
# The whole test suite from a fresh clone: own virtual environment from pyproject.toml,
# lint and type checks, then pytest (tests start their own servers on free ports).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${SCREENING_TEST_VENV:-.venv-test}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e '.[test]'

echo "== ruff"
"$VENV/bin/ruff" check .
echo "== mypy"
"$VENV/bin/mypy" screening features graph bench
echo "== pytest"
# numba's on-disk cache goes to a private folder so a stale cache from elsewhere is never used
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$PWD/$VENV/numba-cache}"
"$VENV/bin/python" -m pytest "$@"

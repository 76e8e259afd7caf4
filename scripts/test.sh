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
# apt_install PACKAGE: install a Debian package (as root, or through sudo -n), refreshing the
# package lists when the first try fails; its status says whether it worked.
apt_install() {
  local sudo=""
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
    sudo="sudo -n env DEBIAN_FRONTEND=noninteractive"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q "$1" || { $sudo apt-get update -q && $sudo apt-get install -y -q "$1"; }
}

# The Redis tests start their own redis-server; CI has only Python, so install it (Debian).
# They fail rather than skip once it is required; SCREENING_REQUIRE_REDIS=0 opts out.
if [ "${SCREENING_REQUIRE_REDIS:-}" != "0" ]; then
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "== installing redis-server (for the Redis tests)"
    apt_install redis-server || {
      echo "redis-server is needed by the Redis tests and could not be installed;" \
           "install it, or run with SCREENING_REQUIRE_REDIS=0 to skip those tests" >&2
      exit 1
    }
  fi
  export SCREENING_REQUIRE_REDIS=1
fi
# The overload bench's C load generator (h2load) is tested too when present: install it the same
# way (Debian's nghttp2-client); without it that one test is skipped, said here.
if ! command -v h2load >/dev/null 2>&1; then
  echo "== installing nghttp2-client (h2load, for the overload bench's test)"
  apt_install nghttp2-client ||
    echo "warning: nghttp2-client could not be installed; the h2load overload test is skipped" >&2
fi
echo "== pytest"
# numba's on-disk cache goes to a private folder so a stale cache from elsewhere is never used
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$PWD/$VENV/numba-cache}"
"$VENV/bin/python" -m pytest "$@"

#!/usr/bin/env bash
# Create .venv (Python 3.11+) and install the project with the given extras from pyproject.toml,
# every dependency at the version pinned in requirements.lock (the versions CI tested; upgrade
# them with scripts/lock.sh --upgrade).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# -c: a constraints file pins whatever gets installed, extras included, and installs nothing else.
if [ -n "$extras" ]; then
  .venv/bin/python -m pip install --quiet -c requirements.lock -e ".[$extras]"
else
  .venv/bin/python -m pip install --quiet -c requirements.lock -e .
fi
# The console's browser tests drive Debian's chromium (never a downloaded browser build).
if [[ ",$extras," == *",test,"* ]] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "installing chromium for the console's browser tests (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "warning: /usr/bin/chromium missing; the console's browser tests need it (apt-get install chromium as root)" >&2
  fi
fi

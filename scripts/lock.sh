#!/usr/bin/env bash
# Re-resolve requirements.lock from pyproject.toml (every extra, every platform, Python 3.11+):
#   bash scripts/lock.sh                          after changing dependencies in pyproject.toml:
#                                                 keeps every pin that still fits
#   bash scripts/lock.sh --upgrade                every dependency to its newest allowed release
#   bash scripts/lock.sh --upgrade-package NAME   just one (repeatable)
# Then `bash scripts/bootstrap.sh test,bench` installs the new pins and `bash scripts/test.sh`
# proves them; commit requirements.lock with the change that needed it.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9  # the resolver's version, so two people get the same lock from the same inputs
if [ ! -x .venv/bin/uv ] || [ "$(.venv/bin/uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  [ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
  .venv/bin/python -m pip install --quiet "uv==$UV_VERSION"
fi
exec .venv/bin/uv pip compile pyproject.toml --all-extras --universal --python-version 3.11 \
  --custom-compile-command "bash scripts/lock.sh" -o requirements.lock "$@"

#!/usr/bin/env bash
# Fresh machine to test results: install with test extras, check the architecture rules, run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test,bench
echo "== architecture rules (import-linter), lint (ruff), types (mypy)"
.venv/bin/lint-imports
.venv/bin/ruff check libs services tests bench
.venv/bin/mypy
echo "== tests"
exec .venv/bin/python -m pytest "$@"

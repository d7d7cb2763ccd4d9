#!/usr/bin/env bash
# Fresh machine to test results: install with test extras, check the architecture rules, run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test,bench
echo "== architecture rules (import-linter)"
.venv/bin/lint-imports
echo "== tests"
exec .venv/bin/python -m pytest "$@"

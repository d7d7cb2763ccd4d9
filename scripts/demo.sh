#!/usr/bin/env bash
# Fresh machine to running demo: install, start the embedded system, play SPEC section 8, stop.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/oms demo "$@"

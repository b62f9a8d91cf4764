#!/usr/bin/env bash
# Set up (if needed), lint (ruff, mypy, the import layers) and run the whole test suite, end-to-end
# tests on real servers included. Arguments go to pytest; `-m "not e2e"` is the quick loop.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/lint-imports
exec .venv/bin/python -m pytest "$@"

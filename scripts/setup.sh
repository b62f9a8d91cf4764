#!/usr/bin/env bash
# Create .venv with everything (Label Studio, torch, the backend, test tools). Idempotent: skips the
# install when requirements have not changed since the last successful run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${MOS_VENV:-.venv}
stamp="$VENV/.requirements.sha256"
want=$(cat requirements.txt ml_backend/requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
    echo "setup: $VENV is up to date"
    exit 0
fi
echo "setup: installing into $VENV (first time: a few minutes, ~7 GB)"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q -r requirements.txt 2> >(grep -v "^WARNING: Location" >&2)
"$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e . 2> >(grep -v "^WARNING: Location" >&2)
"$VENV/bin/python" -m pip check
echo "$want" > "$stamp"
echo "setup: done"

#!/usr/bin/env bash
# Create .venv with everything (Label Studio, torch, the package with its `mos-annotator` command,
# test and lint tools). Idempotent: skips the install when nothing it depends on has changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${MOS_VENV:-.venv}
stamp="$VENV/.requirements.sha256"
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/mos-annotator" ]; then
    echo "setup: $VENV is up to date"
    exit 0
fi
echo "setup: installing into $VENV (first time: a few minutes, ~7 GB)"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q -c requirements.txt -e ".[dev]" 2> >(grep -v "^WARNING: Location" >&2)
"$VENV/bin/python" -m pip check
echo "$want" > "$stamp"
echo "setup: done"

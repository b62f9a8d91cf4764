#!/usr/bin/env bash
# Create .venv with everything (Label Studio, torch, the package with its `mos-annotator` command,
# test and lint tools). Idempotent: skips the install when nothing it depends on has changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${MOS_VENV:-.venv}
# The browser tests drive Debian's Chromium through its chromedriver (Selenium).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: installing chromium and chromium-driver (Debian) for the browser tests"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q chromium chromium-driver >/dev/null \
            || { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; }
    else
        echo "setup: chromium / chromedriver missing and not root: the browser tests will be skipped" \
             "(sudo apt-get install chromium chromium-driver)"
    fi
fi
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

#!/usr/bin/env bash
# Quickstart: set everything up, then run Label Studio + the backend on the sample dataset.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mos-annotator quickstart "$@"

#!/usr/bin/env bash
# The test command: set up what is missing, then run the whole suite on CPU (a few minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${PYTHON:-python3}" -m pytest "$@"

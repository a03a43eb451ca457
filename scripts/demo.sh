#!/usr/bin/env bash
# The demo: set up what is missing, then walk the embedded default simulator and save a GIF and a PNG.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${PYTHON:-python3}" -m examples.demo "$@"

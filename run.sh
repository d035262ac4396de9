#!/usr/bin/env bash
# One command: install everything and start Vigil with four simulated cameras (Ctrl-C to stop).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
exec .venv/bin/vigil run "$@"

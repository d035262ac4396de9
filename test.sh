#!/usr/bin/env bash
# One command: install everything (incl. test peers) and run the whole test suite: lint, types, unit,
# integration (SQLite and PostgreSQL, GStreamer RTSP server, ffmpeg), and the console in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh --dev
scripts/services.sh
echo "==> ruff"; .venv/bin/ruff check src tests bench && .venv/bin/ruff format --check src tests bench
echo "==> mypy (strict)"; .venv/bin/mypy
echo "==> console: generated API types current, typecheck"
(cd web && npm run --silent gen:api >/dev/null && git diff --exit-code -- src/api/schema.d.ts openapi.json \
  && npm run --silent typecheck)
echo "==> pytest"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"

#!/usr/bin/env bash
# Installs everything Vigil needs on a fresh Debian machine, idempotently:
#   system packages (only what is missing), a virtual environment with Vigil, the built web console.
# Usage: scripts/setup.sh [--dev]   (--dev adds test tools: Chromium, GStreamer RTSP server, PostgreSQL check)
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0
[[ "${1:-}" == "--dev" ]] && DEV=1

need_pkgs=()
want=(ffmpeg gcc python3-dev)  # gcc + headers: the C extension (Vigil falls back to pure Python without)
if [[ $DEV == 1 ]]; then
  want+=(chromium fonts-noto-cjk gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
         gstreamer1.0-plugins-bad gir1.2-gst-rtsp-server-1.0 python3-gi sip-tester)
fi
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$p")
done
if (( ${#need_pkgs[@]} )); then
  echo "==> installing system packages: ${need_pkgs[*]}"
  SUDO=""; [[ $(id -u) != 0 ]] && SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need_pkgs[@]}"
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
extras=""; [[ $DEV == 1 ]] && extras="[dev]"
stamp=".venv/.vigil-installed$extras"
# setup.py and the C sources too: the editable install compiles the extension (the RTP depacketizer core).
stale=0
for f in pyproject.toml setup.py src/vigil/protocols/*/*.[ch]; do [[ $f -nt $stamp ]] && stale=1; done
if [[ ! -f $stamp || $stale == 1 ]]; then
  echo "==> installing Vigil into .venv (builds the C extension; without gcc it falls back to pure Python)"
  .venv/bin/pip install -q -e ".$extras"
  touch "$stamp"
fi

# The web console: built once per change of its sources, then served by the API process.
[[ -f web/package.json ]] || exit 0
web_inputs=(src index.html package.json package-lock.json vite.config.ts tsconfig.json)
web_hash=$(cd web && find "${web_inputs[@]}" -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
if [[ ! -f src/vigil/web_dist/.hash || "$(cat src/vigil/web_dist/.hash)" != "$web_hash" ]]; then
  echo "==> building the web console"
  (cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent)
  rm -rf src/vigil/web_dist && cp -r web/dist src/vigil/web_dist && echo "$web_hash" > src/vigil/web_dist/.hash
fi

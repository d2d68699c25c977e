#!/usr/bin/env bash
# `make e2e`: the real-browser check (JupyterLab + headless Chromium). It installs what it needs
# when missing — Debian's chromium through apt, the Playwright driver and JupyterLab through pip
# (never `playwright install`: no browser downloads) — and fails loudly, never skips.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PY:-.venv/bin/python}"
CHROMIUM="${CLAUDEFORCE_E2E_CHROMIUM:-/usr/bin/chromium}"

fail() { echo "e2e: FAILED: $*" >&2; exit 1; }

if [ ! -x "$CHROMIUM" ]; then
  echo "e2e: $CHROMIUM is missing; installing Debian's chromium with apt-get" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || fail "chromium is not installed and apt-get needs root: run 'apt-get install -y chromium' as root"
    SUDO="sudo -n"
  fi
  export DEBIAN_FRONTEND=noninteractive
  # A stale or empty package list makes the first try fail; refresh it once and try again.
  $SUDO apt-get install -y -q chromium fonts-liberation \
    || { $SUDO apt-get update -q && $SUDO apt-get install -y -q chromium fonts-liberation; } \
    || fail "apt-get could not install chromium"
  [ -x "$CHROMIUM" ] || fail "apt-get finished but $CHROMIUM is still missing"
fi

[ -x "$PY" ] || fail "$PY not found: run 'make test' (or 'make e2e') once to create .venv"
if ! "$PY" -c 'import playwright.sync_api, jupyterlab, jupyterlab_widgets' 2>/dev/null; then
  echo "e2e: installing the Playwright driver and JupyterLab into $(dirname "$(dirname "$PY")")" >&2
  "$PY" -m pip install --quiet --disable-pip-version-check 'playwright>=1.45' 'jupyterlab>=4.2' 'ipywidgets>=8.1' \
    || fail "pip could not install playwright/jupyterlab"
fi

export CLAUDEFORCE_E2E_CHROMIUM="$CHROMIUM"
exec "$PY" -m pytest tests/e2e -q -p no:cacheprovider "$@"

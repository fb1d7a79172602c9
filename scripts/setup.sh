#!/usr/bin/env bash
# Sourced by scripts/serve and scripts/test: makes a fresh machine ready, idempotently.
#  - system packages: redis-server and chromium (tests), nginx (load-balancer tests), when
#    missing and we can install them (root with apt-get);
#  - a virtualenv in .venv with ticker and its test dependencies, refreshed when
#    pyproject.toml changes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

want_system="${TICKER_SYSTEM_PACKAGES:-redis-server chromium nginx}"
missing=()
for pkg in $want_system; do
  case "$pkg" in
    redis-server) command -v redis-server >/dev/null || missing+=(redis-server) ;;
    chromium) [ -x /usr/bin/chromium ] || missing+=(chromium) ;;
    nginx) command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx) ;;
  esac
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
    # Debian starts the packaged services; tests start their own, so stop these.
    (service redis-server stop || true; service nginx stop || true) >/dev/null 2>&1
  else
    echo "setup: missing ${missing[*]} (install them, or run as root for apt-get)" >&2
  fi
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=".venv/.ticker-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing Python packages into .venv" >&2
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".[test]"
  echo "$want" > "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"

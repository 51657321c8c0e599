#!/usr/bin/env bash
# Install everything memoryd's tests need on a fresh machine, then run the whole suite:
# Python (pytest, incl. the local embedding model) and the TypeScript client (npm test).
# Usage: scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

# System tools the tests drive: socat (the socat examples), systemd-analyze (unit check).
missing=()
command -v socat >/dev/null || missing+=(socat)
command -v systemd-analyze >/dev/null || missing+=(systemd)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Python: a project venv with memoryd, its test tools and the local model (CPU torch).
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q 'torch==2.13.0'
.venv/bin/pip install -q -e '.[test,local]'
export PATH="$PWD/.venv/bin:$PATH"

ruff check sidecar tests scripts
python -m pytest -q "$@"

# TypeScript client: built and tested against a real memoryd from this venv, under Node and
# then under Bun (agent-core's runtime; npm ci installs it from the npm registry).
(cd clients/typescript && npm ci --no-audit --no-fund && MEMORYD_BIN="$PWD/../../.venv/bin/memoryd" npm test)

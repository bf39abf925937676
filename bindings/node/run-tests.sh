#!/usr/bin/env bash
# Node binding tests: installs the npm dependencies (which builds the addon with
# cargo), then runs the node --test suites. Exits non-zero on any failure.
#
# Needs node >= 18 (20 tested), npm and cargo. Called by the top-level test runner;
# can be run from any directory. HERALD_NODE_DEBUG_BUILD=1 tests a debug build of
# the addon (much faster to compile than the release build with LTO).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
example="$here/../../examples/node"

step() { printf '\n==> %s\n' "$*"; }

command -v node >/dev/null || { echo "node not found" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm not found" >&2; exit 1; }
command -v cargo >/dev/null || { echo "cargo not found" >&2; exit 1; }
echo "node $(node --version), npm $(npm --version 2>/dev/null), $(cargo --version)"

# npm ci installs exactly what package-lock.json records. The install script of
# bindings/node (node scripts/build.js) is skipped here and the build run once,
# explicitly, so its output is visible and failures are reported as such.
step "npm ci (bindings/node)"
(cd "$here" && npm ci --ignore-scripts --no-audit --no-fund)

if [ "${HERALD_NODE_DEBUG_BUILD:-0}" = 1 ]; then
  step "build the addon (cargo build -p herald-node)"
  (cd "$here" && npm run build:debug)
else
  step "build the addon (cargo build --release -p herald-node)"
  (cd "$here" && npm run build)
fi

step "npm ci (examples/node)"
(cd "$example" && npm ci --ignore-scripts --no-audit --no-fund)

step "node --test"
cd "$here"
node --test --test-concurrency=2 --test-timeout=120000 test/*.test.js

#!/usr/bin/env bash
# herald-client tests: installs what they need (npm packages from the lockfile,
# Debian's chromium via apt when /usr/bin/chromium is missing; no browser download),
# builds the Node binding's addon with its own scripts and the demo, then runs the
# node --test suites: client logic against real servers, the protocol drift check,
# and headless Chromium (recovery, React hooks, the demo dashboard's screenshot in
# test-artifacts/). Exits non-zero on any failure.
#
# Environment: HERALD_NODE_DEBUG_BUILD=1 builds the addon in debug (faster to compile);
# HERALD_CHROMIUM overrides /usr/bin/chromium.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
node_binding="$repo/bindings/node"
chromium="${HERALD_CHROMIUM:-/usr/bin/chromium}"

step() { printf '\n==> %s\n' "$*"; }

for tool in node npm cargo; do
  command -v "$tool" >/dev/null || { echo "$tool not found" >&2; exit 1; }
done
echo "node $(node --version), npm $(npm --version 2>/dev/null), $(cargo --version)"

if [ ! -x "$chromium" ]; then
  step "apt-get install chromium (Debian's package)"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
"$chromium" --version 2>/dev/null | head -n 1 || true

step "the Node binding's addon (bindings/node, its own scripts)"
(cd "$node_binding" && npm ci --ignore-scripts --no-audit --no-fund)
if [ "${HERALD_NODE_DEBUG_BUILD:-0}" = 1 ]; then
  (cd "$node_binding" && npm run build:debug)
else
  (cd "$node_binding" && npm run build)
fi

step "npm ci (examples/node, whose page the browser tests open)"
(cd "$repo/examples/node" && npm ci --ignore-scripts --no-audit --no-fund)

step "the demo (cargo build --example demo)"
(cd "$repo" && cargo build --example demo)

step "npm ci (bindings/browser)"
cd "$here"
npm ci --ignore-scripts --no-audit --no-fund

step "build (tsc: dist/esm, dist/cjs, .d.ts)"
npm run build

step "size of the core client"
node scripts/size.mjs

step "the committed bundle examples/dashboard/herald-client.js is up to date"
node scripts/bundle.mjs --check

step "node --test"
HERALD_CHROMIUM="$chromium" node --test --test-concurrency=1 --test-timeout=180000 test/*.test.mjs

#!/usr/bin/env bash
# Runs every test of every language: the Rust core (cargo test), then the Python,
# Node and Go bindings, the artifacts of bindings/dist.sh installed without cargo, and the
# browser client (headless Chromium). Installs what the
# suites need (pip, npm and Go packages, Debian's chromium) and builds the core.
# Exits non-zero if any suite fails; the last line sums the suites.
set -uo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=never
passed=0
failed=0
summary=()

suite() {
    local name=$1
    shift
    echo
    echo "=== $name: $*"
    local start=$SECONDS
    if "$@"; then
        passed=$((passed + 1))
        summary+=("PASS  $name ($((SECONDS - start)) s)")
    else
        failed=$((failed + 1))
        summary+=("FAIL  $name ($((SECONDS - start)) s)")
    fi
}

suite "rust core" cargo test -p herald --locked
suite "python binding" bash bindings/python/run-tests.sh
suite "node binding" bash bindings/node/run-tests.sh
suite "go binding" bash bindings/go/run-tests.sh
# After the Node and Go suites: dist.sh then reuses their release build of the core and addon.
suite "packaging" bash bindings/packaging/run-tests.sh
suite "browser client" bash bindings/browser/run-tests.sh

echo
echo "=== summary"
printf '%s\n' "${summary[@]}"
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

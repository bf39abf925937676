#!/usr/bin/env bash
# Runs every check and test of every language: rustfmt, clippy (warnings are errors) and a
# build with the declared rust-version, the Rust core (cargo test), then the Python, Node
# and Go bindings, the artifacts of bindings/dist.sh installed without cargo, and the
# browser client (headless Chromium). Installs what the suites need (pip, npm and Go
# packages, Debian's chromium, and redis-server for the Redis broker's tests) and builds
# the core. Exits non-zero if any suite fails; the last line sums the suites.
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

# The Redis broker's tests start their own redis-server on a free loopback port.
install_redis() {
    command -v redis-server >/dev/null && return 0
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq redis-server >/dev/null
    fi
    command -v redis-server >/dev/null
}

suite "redis-server" install_redis

# The declared minimum Rust version, read from Cargo.toml; rustup installs it if missing.
msrv_check() {
    local msrv
    msrv=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
    [ -n "$msrv" ] || { echo "no rust-version in Cargo.toml" >&2; return 1; }
    rustup toolchain list | grep -q "^$msrv" ||
        rustup toolchain install "$msrv" --profile minimal || return 1
    # Its own target directory: another compiler's artifacts would rebuild everything.
    CARGO_TARGET_DIR=target/msrv cargo "+$msrv" check -p herald --all-targets --locked
}

suite "rustfmt" cargo fmt --all --check
suite "clippy" cargo clippy --all-targets --locked -- -D warnings
suite "rust-version build" msrv_check
suite "rust core" cargo test -p herald --locked
suite "python binding" bash bindings/python/run-tests.sh
suite "node binding" bash bindings/node/run-tests.sh
suite "go binding" bash bindings/go/run-tests.sh
suite "multi-process (Python, Node, Go hosts, one Redis)" bindings/python/.venv/bin/python tests/multiprocess/run.py
# After the Node and Go suites: dist.sh then reuses their release build of the core and addon.
suite "packaging" bash bindings/packaging/run-tests.sh
suite "browser client" bash bindings/browser/run-tests.sh

echo
echo "=== summary"
printf '%s\n' "${summary[@]}"
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

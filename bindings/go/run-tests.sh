#!/usr/bin/env bash
# Builds the Herald core (release, static library) and runs the Go binding's
# and the Go example's checks: gofmt, go vet, go test -race.
# Needs only cargo, go and a C compiler (for cgo). Exits non-zero on failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CGO_ENABLED=1

echo "==> cargo build --release (core)"
(cd "$root" && cargo build --release)
for f in "$root/target/release/libherald.a" "$root/include/herald.h"; do
    [[ -f "$f" ]] || { echo "missing $f after cargo build" >&2; exit 1; }
done

status=0
for dir in "$here" "$root/examples/go"; do
    echo "==> $dir"
    cd "$dir"
    unformatted="$(gofmt -l .)"
    if [[ -n "$unformatted" ]]; then
        echo "gofmt needed on: $unformatted" >&2
        status=1
    fi
    go vet ./... || status=1
    go test -race -count=1 -timeout 10m ./... || status=1
done

if [[ $status -ne 0 ]]; then
    echo "Go binding tests FAILED" >&2
else
    echo "Go binding tests passed"
fi
exit $status

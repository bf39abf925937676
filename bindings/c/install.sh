#!/usr/bin/env bash
# Installs the Herald C SDK: include/herald.h, lib/libherald.{a,so} (stripped) and
# lib/pkgconfig/herald.pc (links the shared library) and herald-static.pc (the static one).
#
#   bindings/c/install.sh PREFIX              from target/release (builds it if missing)
#   bindings/c/install.sh --relocatable DIR   .pc files locate the SDK from their own
#                                             place (pkg-config's ${pcfiledir}): for tarballs
#
# HERALD_LIB_DIR=dir takes the libraries from dir instead of target/release (no cargo run).
# Then: PKG_CONFIG_PATH=PREFIX/lib/pkgconfig cc app.c $(pkg-config --cflags --libs herald)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
relocatable=0
if [ "${1:-}" = --relocatable ]; then
    relocatable=1
    shift
fi
[ $# -eq 1 ] || { echo "usage: $0 [--relocatable] PREFIX" >&2; exit 2; }
mkdir -p "$1"
prefix="$(cd "$1" && pwd)"

# The system libraries the static archive needs, as reported by
# `cargo rustc --release --lib -- --print native-static-libs` on glibc Linux.
native_libs="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"

lib_dir="${HERALD_LIB_DIR:-$root/target/release}"
if [ -z "${HERALD_LIB_DIR:-}" ] && { [ ! -f "$lib_dir/libherald.a" ] || [ ! -f "$lib_dir/libherald.so" ]; }; then
    echo "herald: building the core (cargo build --release --lib; a few minutes on 2 cores)" >&2
    (cd "$root" && cargo build --release --lib -p herald)
fi
for f in "$lib_dir/libherald.a" "$lib_dir/libherald.so" "$root/include/herald.h"; do
    [ -f "$f" ] || { echo "herald: missing $f" >&2; exit 1; }
done

version="$(sed -n 's/^#define HERALD_VERSION_STRING "\(.*\)"$/\1/p' "$root/include/herald.h")"
[ -n "$version" ] || { echo "herald: no HERALD_VERSION_STRING in include/herald.h" >&2; exit 1; }

install -d "$prefix/include" "$prefix/lib/pkgconfig"
install -m 644 "$root/include/herald.h" "$prefix/include/herald.h"
install -m 644 "$lib_dir/libherald.a" "$prefix/lib/libherald.a"
install -m 755 "$lib_dir/libherald.so" "$prefix/lib/libherald.so"
# Debug sections only from the archive (its symbols are what a linker needs); the
# shared library keeps just its dynamic symbols, the C API.
strip --strip-debug "$prefix/lib/libherald.a"
strip --strip-unneeded "$prefix/lib/libherald.so"

if [ "$relocatable" = 1 ]; then
    pc_prefix='${pcfiledir}/../..'
else
    pc_prefix="$prefix"
fi
for pc in herald herald-static; do
    sed -e "s|@PREFIX@|$pc_prefix|" -e "s|@VERSION@|$version|" -e "s|@NATIVE_LIBS@|$native_libs|" \
        "$root/bindings/c/$pc.pc.in" > "$prefix/lib/pkgconfig/$pc.pc"
done
echo "herald: installed the C SDK $version into $prefix" >&2

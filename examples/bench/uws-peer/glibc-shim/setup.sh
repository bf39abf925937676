#!/usr/bin/env bash
# Makes the prebuilt uWebSockets.js addon loadable on glibc < 2.38 and prints the
# environment the peer needs: "LD_PRELOAD=<shim> BENCH_UWS_ADDON=<patched addon>".
#
#  1. build/libc23shim.so: c23.c, the three C23 functions the addon calls
#     (__isoc23_strtol, __isoc23_strtoul, __isoc23_sscanf) forwarded to their C99
#     versions;
#  2. build/uws.node: a copy of the addon for this Node ABI whose need of GLIBC_2.38
#     is marked weak (weaken-version.py), so the loader does not refuse it; those
#     three symbols then bind to the preloaded shim.
# Nothing in node_modules changes. Exits non-zero, saying why, if the result won't load.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PEER="$(dirname "$HERE")"
OUT="$PEER/build"
mkdir -p "$OUT"
ABI=$(node -p 'process.platform + "_" + process.arch + "_" + process.versions.modules')
ADDON="$PEER/node_modules/@btc-vision/uwebsockets.js/uws_$ABI.node"
[ -f "$ADDON" ] || { echo "no prebuilt addon for $ABI"; exit 1; }
"${CC:-cc}" -O2 -Wall -Wextra -shared -fPIC -o "$OUT/libc23shim.so" "$HERE/c23.c"
python3 "$HERE/weaken-version.py" "$ADDON" "$OUT/uws.node" GLIBC_2.38 >/dev/null
ENV="LD_PRELOAD=$OUT/libc23shim.so BENCH_UWS_ADDON=$OUT/uws.node"
# shellcheck disable=SC2086 # the two assignments
env $ENV node -e 'const u = require(process.env.BENCH_UWS_ADDON); if (typeof u.App !== "function") process.exit(1)' \
  || { echo "the patched addon does not load"; exit 1; }
echo "$ENV"

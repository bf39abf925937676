#!/usr/bin/env bash
# Herald benchmark kit: the one command.
#
#   examples/bench/run.sh                 full run (5 rounds, all cases), prints the table
#   examples/bench/run.sh --quick         small smoke run (2 rounds, N<=1000)
#   examples/bench/run.sh --write         full run, and writes the results into BENCHMARKS.md
#   examples/bench/run.sh --rounds 7 --servers herald-c,ws-peer,ceiling ...
#                                         any other option goes to herald-bench (see --help)
#
# It builds what it needs (the core, the load client and ceiling server, the C host,
# the Go host, the Node addon), installs the ws peer's npm dependencies from its
# lockfile, raises the open-file limit, and runs every server in alternation.
# Servers whose toolchain or binding is missing are left out, with a note.
# Everything listens on 127.0.0.1 only; every wait is bounded.
set -euo pipefail

KIT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$KIT/../.." && pwd)"
cd "$ROOT"

WRITE=0
ARGS=()
for a in "$@"; do
  case "$a" in
    --write) WRITE=1 ;;
    *) ARGS+=("$a") ;;
  esac
done

say() { printf '%s\n' "$*" >&2; }

# --- file descriptors: server and client each hold one per connection (N=10000) ---
HARD=$(ulimit -Hn)
if [ "$HARD" != "unlimited" ] && [ "$HARD" -lt 10500 ]; then
  say "ulimit -Hn is $HARD: N=10000 needs more than 10500 descriptors per process."
  say "Raise the hard limit (e.g. in /etc/security/limits.conf) or pass smaller --flat10k/--idle."
fi
if [ "$HARD" = "unlimited" ]; then ulimit -n 65536; else ulimit -n "$HARD"; fi
say "open files: $(ulimit -n) (hard $(ulimit -Hn))"

# --- build ---
say "building the core, the load client and the ceiling server (release)..."
cargo build --release --lib -q
cargo build --release -p herald-bench -q

SERVERS=()
COST_HOSTS=()
NOTES=()

mkdir -p "$KIT/hosts/c/build"
"${CC:-cc}" -O2 -Wall -Wextra -std=c11 -I"$ROOT/include" -o "$KIT/hosts/c/build/herald-c-host" \
  "$KIT/hosts/c/herald_host.c" "$ROOT/target/release/libherald.a" -lpthread -ldl -lm
SERVERS+=(herald-c); COST_HOSTS+=(herald-c)

# Node host through the napi binding: build the addon crate; point the binding at it.
if command -v node >/dev/null && [ -f "$ROOT/bindings/node/index.js" ]; then
  if cargo build --release -p herald-node -q 2>/dev/null && [ -f "$ROOT/target/release/libherald_node.so" ]; then
    export HERALD_NODE_ADDON="$ROOT/target/release/libherald_node.so"
  elif [ -f "$ROOT/bindings/node/herald.node" ]; then
    export HERALD_NODE_ADDON="$ROOT/bindings/node/herald.node"
  fi
  if [ -n "${HERALD_NODE_ADDON:-}" ] && node -e "require('$ROOT/bindings/node')" 2>/dev/null; then
    SERVERS+=(herald-node); COST_HOSTS+=(herald-node)
  else
    NOTES+=("herald-node skipped: the napi addon could not be built or loaded")
  fi
else
  NOTES+=("herald-node skipped: node or bindings/node missing")
fi

# Python host through the ctypes binding, on the release library.
export HERALD_LIBRARY="$ROOT/target/release/libherald.so"
if command -v python3 >/dev/null && \
   PYTHONPATH="$ROOT/bindings/python/src" python3 -c "import herald" 2>/dev/null; then
  SERVERS+=(herald-python); COST_HOSTS+=(herald-python)
else
  NOTES+=("herald-python skipped: python3 or bindings/python missing")
fi

# The ws peer: npm ci from the lockfile.
if command -v node >/dev/null && command -v npm >/dev/null; then
  if [ ! -d "$KIT/ws-peer/node_modules/ws" ]; then
    say "installing the ws peer's dependencies (npm ci)..."
    (cd "$KIT/ws-peer" && npm ci --no-audit --no-fund --loglevel=error)
  fi
  SERVERS+=(ws-peer)
else
  NOTES+=("ws-peer skipped: node/npm missing")
fi

SERVERS+=(ceiling)

# Go: notify cost through the cgo binding.
if command -v go >/dev/null && [ -f "$ROOT/bindings/go/go.mod" ]; then
  if (cd "$KIT/hosts/go" && go build -o build/herald-go-host . ) 2>/dev/null; then
    COST_HOSTS+=(herald-go)
  else
    NOTES+=("herald-go skipped: the Go host did not build")
  fi
fi

# The C host again, publishing through the Redis broker (a redis-server of the kit's
# own on a free loopback port, no persistence, killed on exit): herald-c-redis (one
# node) and herald-c-redis-x3 (three nodes), each with one or 16 publishing threads.
REDIS_PID=""
stop_redis() { if [ -n "$REDIS_PID" ]; then kill "$REDIS_PID" 2>/dev/null || true; fi; }
trap stop_redis EXIT
REDIS_ARGS=()
if command -v redis-server >/dev/null; then
  REDIS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
  REDIS_PID=$!
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null && break; sleep 0.1; done
  # herald-c-redis-x3: three such nodes on the same Redis, subscribers spread over them,
  # publications through the first. -p16: the host publishes from 16 threads, so 16 calls
  # wait for Redis at once (each call waits for its confirmation). --redis lets the kit
  # read redis-server's CPU time.
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  REDIS_ARGS=(--server-cmd "herald-c-redis=env BENCH_REDIS=$REDIS_URL $KIT/hosts/c/build/herald-c-host"
              --server-cmd "herald-c-redis-p16=env BENCH_PUBLISHERS=16 BENCH_REDIS=$REDIS_URL $KIT/hosts/c/build/herald-c-host"
              --cluster herald-c-redis-x3=herald-c-redis:3 --cluster herald-c-redis-x3-p16=herald-c-redis-p16:3
              --redis "127.0.0.1:$REDIS_PORT")
  SERVERS+=(herald-c-redis herald-c-redis-x3 herald-c-redis-p16 herald-c-redis-x3-p16); COST_HOSTS+=(herald-c-redis)
else
  NOTES+=("herald-c-redis skipped: redis-server missing (apt-get install -y redis-server)")
fi

join() { local IFS=,; echo "$*"; }
for n in "${NOTES[@]+"${NOTES[@]}"}"; do say "note: $n"; done

OUT="$ROOT/target/bench"
mkdir -p "$OUT"
say "servers: $(join "${SERVERS[@]}"); notify-cost hosts: $(join "${COST_HOSTS[@]}")"
"$ROOT/target/release/herald-bench" \
  --kit "$KIT" --repo "$ROOT" \
  --servers "$(join "${SERVERS[@]}")" --cost-hosts "$(join "${COST_HOSTS[@]}")" \
  --json "$OUT/results.json" --markdown "$OUT/results.md" --logs "$OUT/logs" \
  "${REDIS_ARGS[@]+"${REDIS_ARGS[@]}"}" "${ARGS[@]+"${ARGS[@]}"}"

if [ "$WRITE" = 1 ]; then
  MD="$ROOT/BENCHMARKS.md"
  BEGIN='<!-- bench:results:begin -->'
  END='<!-- bench:results:end -->'
  if [ ! -f "$MD" ] || ! grep -q "$BEGIN" "$MD"; then
    printf '\n## Results\n\n%s\n%s\n' "$BEGIN" "$END" >> "$MD"
  fi
  python3 - "$MD" "$OUT/results.md" "$BEGIN" "$END" <<'PY'
import sys
md, res, begin, end = sys.argv[1:]
text = open(md, encoding="utf-8").read()
new = open(res, encoding="utf-8").read().strip()
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
open(md, "w", encoding="utf-8").write(head + begin + "\n" + new + "\n" + end + tail)
PY
  say "results written to $MD"
fi
say "raw per-round figures: $OUT/results.json"

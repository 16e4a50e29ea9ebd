#!/usr/bin/env bash
# Instructions per call of `plugtap proxy` with recording on, counted by
# valgrind's callgrind: unlike wall-clock figures they repeat exactly for
# the same binary and workload, however busy the machine is. Same
# workload as scripts/bench.sh (ping-pong against the mock server, small
# or 4 KiB params). The proxy runs once for REPEAT calls per connection
# and once for one call per connection; the difference over the
# difference in calls is the cost per call, start-up excluded.
#   scripts/bench-instr.sh [small|4k] [CONNS] [REPEAT]
# Counts user-space instructions only (not the kernel's copying), and
# valgrind counts each byte of a `rep movs`/`rep stos` (glibc's large
# memcpy/memset) as one instruction. Not part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
payload=${1:-4k}
conns=${2:-16}
repeat=${3:-200}
command -v valgrind >/dev/null || { echo "valgrind is missing" >&2; exit 2; }
cargo build --release --quiet --locked --bin plugtap
bin=$PWD/target/release/plugtap
work=$(mktemp -d /tmp/plugtap-instr.XXXXXX)
server_pid=""
trap '[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"' EXIT

big=$(python3 -c 'print("x" * 4096)')
echo '{"role": "server", "on_methods": {"bench.Ping": [{"result": {"pong": true}}]}}' >"$work/server.json"
echo '{"role": "client", "try_methods": [{"method": "bench.Ping", "params": [{"n": 1}]}]}' >"$work/small.json"
echo "{\"role\": \"client\", \"try_methods\": [{\"method\": \"bench.Ping\", \"params\": [{\"data\": \"$big\"}]}]}" >"$work/4k.json"
[ -f "$work/$payload.json" ] || { echo "payload is small or 4k" >&2; exit 2; }

wait_sock() { for _ in $(seq 600); do [ -S "$1" ] && return 0; sleep 0.05; done; echo "no socket $1" >&2; exit 2; }

"$bin" -q server --spec "$work/server.json" --socket "$work/back.sock" --no-conversations 2>/dev/null &
server_pid=$!
wait_sock "$work/back.sock"

run() { # run REPEAT -> prints "calls instructions"
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
    "$bin" -q proxy --listen "$work/front.sock" --upstream "$work/back.sock" \
    --record "$work/rec.jsonl" 2>"$work/valgrind.log" &
  local pid=$!
  wait_sock "$work/front.sock"
  "$bin" -q client --spec "$work/$payload.json" --socket "$work/front.sock" \
    --concurrency "$conns" --repeat "$1" --json >"$work/report.json" 2>/dev/null
  kill -TERM "$pid"
  wait "$pid" || true
  rm -f "$work/front.sock"
  local calls ir
  calls=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['calls'])" "$work/report.json")
  ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$work/cg.out")
  echo "$calls $ir"
}

read -r calls ir < <(run "$repeat")
read -r calls0 ir0 < <(run 1)
echo "$payload x$conns conn: $calls calls, $ir instructions; $calls0 calls, $ir0 instructions"
echo "instructions per call: $(( (ir - ir0) / (calls - calls0) ))"

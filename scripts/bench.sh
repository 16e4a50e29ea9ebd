#!/usr/bin/env bash
# Relay benchmark, all in one run on this machine: the same workload
# (request/response ping-pong with small and 4 KiB params, on 1 and 16
# connections) driven by plugtap's client load mode against plugtap's mock
# server (release builds)
#   direct    straight to the server
#   plugtap   through `plugtap proxy` with full decoding and recording on
#   socat     through `socat UNIX-LISTEN:...,fork UNIX-CONNECT:...`
#   bare      through examples/bare_relay.rs (tokio copy_bidirectional)
# and prints calls/s, the ratio to socat, the p50/p99 latency added over
# direct, and the relay's CPU time per call. Not part of the test suite.
# A shared 2-core VM is noisy from one run to the next, so every
# configuration runs BENCH_ROUNDS times, the paths taking turns (in an
# order that rotates each round: 4 rounds put each path in each place), and the
# table shows each figure's median over the rounds. Each recording is
# checked (its `end` line counts at least two frames per call) and then
# deleted, so the disk does not fill up.
#   BENCH_SECS=3 BENCH_ROUNDS=3 scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${BENCH_SECS:-3}
rounds=${BENCH_ROUNDS:-3}
command -v socat >/dev/null || { echo "socat is missing: apt-get install -y socat" >&2; exit 2; }
cargo build --release --quiet --locked --bin plugtap --example bare_relay
bin=target/release/plugtap
relay=target/release/examples/bare_relay
out=bench-out
rm -rf "$out"; mkdir -p "$out"
work=$(mktemp -d /tmp/plugtap-bench.XXXXXX)
pids=()
relay_pid=""
cleanup() {
  for p in "${pids[@]}" $relay_pid; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

big=$(python3 -c 'print("x" * 4096)')
cat >"$out/server.json" <<JSON
{"role": "server", "on_methods": {"bench.Ping": [{"result": {"pong": true}}]}}
JSON
cat >"$out/small.json" <<JSON
{"role": "client", "try_methods": [{"method": "bench.Ping", "params": [{"n": 1}]}]}
JSON
cat >"$out/4k.json" <<JSON
{"role": "client", "try_methods": [{"method": "bench.Ping", "params": [{"data": "$big"}]}]}
JSON

wait_sock() { for _ in $(seq 200); do [ -S "$1" ] && return 0; sleep 0.05; done; echo "no socket $1" >&2; exit 2; }
cpu_ticks() { # utime+stime+cutime+cstime of a process, in clock ticks
  awk '{print $14+$15+$16+$17}' "/proc/$1/stat"
}

"$bin" -q server --spec "$out/server.json" --socket "$work/back.sock" --no-conversations &
pids+=($!); wait_sock "$work/back.sock"

start_relay() { # start_relay KIND -> sets relay_pid, front
  case $1 in
    direct) relay_pid=""; front="$work/back.sock" ;;
    plugtap) "$bin" -q proxy --listen "$work/front.sock" --upstream "$work/back.sock" \
               --record "$out/plugtap-$2.jsonl" & relay_pid=$!; front="$work/front.sock" ;;
    socat) socat "UNIX-LISTEN:$work/front.sock,fork" "UNIX-CONNECT:$work/back.sock" & relay_pid=$!; front="$work/front.sock" ;;
    bare) "$relay" "$work/front.sock" "$work/back.sock" & relay_pid=$!; front="$work/front.sock" ;;
  esac
  [ -n "$relay_pid" ] && wait_sock "$front"
  return 0
}
stop_relay() {
  if [ -n "$relay_pid" ]; then kill -TERM "$relay_pid"; wait "$relay_pid" 2>/dev/null || true; rm -f "$work/front.sock"; fi
}

results="$out/results.jsonl"
for round in $(seq "$rounds"); do
for payload in small 4k; do
  for conns in 1 16; do
    # The order rotates from round to round, so no path always runs
    # right after the same one (a heavy run can leave the machine busier).
    kinds=(direct plugtap socat bare)
    for i in 0 1 2 3; do
      kind=${kinds[$(( (i + round) % 4 ))]}
      start_relay "$kind" "$payload-$conns"
      before=0; [ -n "$relay_pid" ] && before=$(cpu_ticks "$relay_pid")
      "$bin" -q client --spec "$out/$payload.json" --socket "$front" \
        --concurrency "$conns" --duration "$secs" --json >"$work/report.json"
      after=0; [ -n "$relay_pid" ] && { sleep 0.2; after=$(cpu_ticks "$relay_pid"); }
      stop_relay
      rec="$out/plugtap-$payload-$conns.jsonl"
      frames=null
      if [ "$kind" = plugtap ]; then
        frames=$(tail -n 1 "$rec" | python3 -c 'import json,sys; l=json.loads(sys.stdin.read()); print(l["frames"] if l.get("type") == "end" else "null")')
        rm -f "$rec"
      fi
      python3 - "$work/report.json" "$kind" "$payload" "$conns" "$before" "$after" "$(getconf CLK_TCK)" "$frames" >>"$results" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
kind, payload, conns, before, after, tck = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
frames = json.loads(sys.argv[8])
if kind == "plugtap" and (frames is None or frames < 2 * r["calls"]):
    sys.exit(f"the recording of {payload} x{conns} holds {frames} frames for {r['calls']} calls")
cpu_us = (after - before) * 1e6 / tck
print(json.dumps({"kind": kind, "payload": payload, "conns": conns, "calls": r["calls"],
                  "rate": r["calls_per_sec"], "p50": r["latency_us"]["p50"], "p99": r["latency_us"]["p99"],
                  "cpu_us_per_call": cpu_us / r["calls"] if r["calls"] and kind != "direct" else None}))
PY
      echo "done: round $round, $payload, $conns connections, $kind" >&2
    done
  done
done
done

python3 - "$results" "$rounds" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
groups = {}
for r in rows:
    groups.setdefault((r["payload"], r["conns"], r["kind"]), []).append(r)
def med(key, kind_rows):
    vals = [r[key] for r in kind_rows if r[key] is not None]
    return statistics.median(vals) if vals else None
by = {k: {key: med(key, v) for key in ("rate", "p50", "p99", "cpu_us_per_call")} for k, v in groups.items()}
print(f"medians over {sys.argv[2]} rounds")
print(f'{"workload":<18}{"path":<9}{"calls/s":>9}{"x socat":>9}{"p50 µs":>8}{"p99 µs":>8}{"+p50":>7}{"+p99":>7}{"cpu µs/call":>12}')
for payload in ("small", "4k"):
    for conns in (1, 16):
        d = by[(payload, conns, "direct")]
        s = by[(payload, conns, "socat")]
        for kind in ("direct", "plugtap", "socat", "bare"):
            r = by[(payload, conns, kind)]
            cpu = "" if r["cpu_us_per_call"] is None else f'{r["cpu_us_per_call"]:.1f}'
            print(f'{payload + " x" + str(conns) + " conn":<18}{kind:<9}{r["rate"]:>9.0f}{r["rate"] / s["rate"]:>9.2f}'
                  f'{r["p50"]:>8.0f}{r["p99"]:>8.0f}{r["p50"] - d["p50"]:>7.0f}{r["p99"] - d["p99"]:>7.0f}{cpu:>12}')
PY

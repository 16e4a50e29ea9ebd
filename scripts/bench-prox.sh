#!/usr/bin/env bash
# Measures what the prox wrapper (`plugtap proxy --protocol prox`) adds to
# each hook call. plugtap's client stands in for prox and calls on_request
# N times, for plugtap's mock plugin (specs/prox-mock-plugin.json) and for
# the Python prox-style plugin (tests/peers/prox/prox_plugin.py),
#   direct     the client starts the plugin itself,
#   wrapped    through the wrapper, decoding and logging (to /dev/null),
#   recorded   through the wrapper with -q and --record (no log lines).
# Latency: one call at a time on one connection (p50 and p90 from the
# client's per-step times). Throughput: N calls spread over C connections,
# hooks/s = (N - 1) / (time of the N-call run - time of a 1-call run), so
# starting the plugin does not count. Prints the ratios to direct. Not part
# of the test suite.  Usage: scripts/bench-prox.sh [N] [C]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-2000}"
c="${2:-8}"
scripts/setup-python-prox.sh
cargo build --release --quiet --locked
bin="$PWD/target/release/plugtap"
work=$(mktemp -d /tmp/plugtap-proxbench.XXXXXX)
trap 'rm -rf "$work"' EXIT

spec() { # calls connections > file
  python3 - "$1" "$2" <<'PY'
import json, sys
n, conns = int(sys.argv[1]), int(sys.argv[2])
step = {"method": "on_request",
        "params": {"route_id": "web:0", "method": "GET", "path": "/api/items", "query": "page=2",
                   "domain": "api.example", "remote_addr": "198.51.100.7:51234",
                   "headers": {"User-Agent": "curl/8.5", "X-User": "alice"}},
        "expect": {"result": {"allow": True}}}
print(json.dumps({"role": "client", "protocol": "prox", "prox": {"connections": conns},
                  "try_methods": [step] * n}))
PY
}
spec "$n" 1 > "$work/seq.json"
spec "$n" "$c" > "$work/par.json"
spec 1 "$c" > "$work/one.json"

run() { # spec cmd -> report on stdout; prints wall seconds to fd 3
  local t0 t1
  t0=$(date +%s.%N)
  "$bin" -q client --spec "$1" --start-cmd "$2" --json 2>/dev/null > "$work/report.json" \
    || { echo "run failed: $2" >&2; exit 1; }
  t1=$(date +%s.%N)
  echo "$t0 $t1" > "$work/wall"
}

measure() { # label cmd
  run "$work/seq.json" "$2"
  local lat
  lat=$(python3 - "$work/report.json" <<'PY'
import json, sys
ms = sorted(s["elapsed_ms"] for s in json.load(open(sys.argv[1]))["steps"])
print("%.4f %.4f %d" % (ms[len(ms) // 2], ms[int(len(ms) * 0.9)], len(ms)))
PY
)
  run "$work/one.json" "$2"; local one; one=$(cat "$work/wall")
  run "$work/par.json" "$2"; local par; par=$(cat "$work/wall")
  python3 - "$1" "$lat" "$one" "$par" "$n" <<'PY'
import sys
label, lat, one, par, n = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4].split(), int(sys.argv[5])
t1 = float(one[1]) - float(one[0])
tn = float(par[1]) - float(par[0])
print(label, lat[0], lat[1], "%.1f" % ((n - 1) / max(tn - t1, 1e-9)))
PY
}

mock="$bin -q server --spec $PWD/specs/prox-mock-plugin.json"
py="$PWD/.venv-prox/bin/python $PWD/tests/peers/prox/prox_plugin.py --socket $work/py.sock"
{
  for p in mock python; do
    cmd=$([ "$p" = mock ] && echo "$mock" || echo "$py")
    measure "$p direct" "$cmd"
    measure "$p wrapped" "sh -c 'exec $bin proxy --protocol prox -- $cmd 2>/dev/null'"
    measure "$p recorded" "sh -c 'exec $bin -q proxy --protocol prox --record $work/rec.jsonl -- $cmd 2>/dev/null'"
  done
} > "$work/results"

python3 - "$work/results" "$n" "$c" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
base = {}
print("%-7s %-9s %8s %8s %10s %8s %8s" % ("plugin", "path", "p50 ms", "p90 ms", "hooks/s", "p50 x", "hooks/s x"))
for plugin, path, p50, p90, rate in rows:
    p50, p90, rate = float(p50), float(p90), float(rate)
    if path == "direct":
        base[plugin] = (p50, rate)
    b50, brate = base[plugin]
    print("%-7s %-9s %8.3f %8.3f %10.0f %8.2f %8.2f" % (plugin, path, p50, p90, rate, p50 / b50, rate / brate))
print("(latency: %s calls one at a time; hooks/s: %s calls over %s connections)" % (sys.argv[2], sys.argv[2], sys.argv[3]))
PY

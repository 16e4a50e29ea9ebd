#!/usr/bin/env bash
# Measures what the go-plugin wrapper adds to each gRPC call. In one run,
# the stand-in host makes N Put+Get calls (one at a time, as hosts do)
#   1. directly against a plugin (baseline),
#   2. through `plugtap proxy --protocol go-plugin` decoding every message
#      (logs to /dev/null),
#   3. the same with -q (decoding still runs; no log lines are formatted),
# for plugtap's mock plugin and for the Python grpcio plugin. Prints the
# median and p90 call latency from the host's report and the ratio to the
# baseline. Not part of the test suite. Usage: scripts/bench-goplugin.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-500}"
scripts/setup-goplugin-peer.sh
cargo build --release --quiet --locked
bin="$PWD/target/release/plugtap"
work=$(mktemp -d /tmp/plugtap-gpbench.XXXXXX)
trap 'rm -rf "$work"' EXIT

python3 - "$n" "$PWD" > "$work/spec.json" <<'PY'
import json, sys
n, root = int(sys.argv[1]), sys.argv[2]
calls = []
for i in range(n):
    calls.append({"method": "kv.KV/Put", "request": {"key": "k%d" % i, "value": "dmFsdWU="}})
    calls.append({"method": "kv.KV/Get", "request": {"key": "k%d" % i}})
print(json.dumps({"protocol": "go-plugin", "role": "client", "health": False, "reflection": False,
                  "handshake": {"magic_cookie_key": "BASIC_PLUGIN", "magic_cookie_value": "hello"},
                  "schema": {"proto": [root + "/tests/peers/goplugin/kv.proto"]}, "calls": calls}))
PY
cat > "$work/mock.json" <<EOF2
{"protocol": "go-plugin", "role": "server",
 "handshake": {"magic_cookie_key": "BASIC_PLUGIN", "magic_cookie_value": "hello"},
 "schema": {"proto": ["$PWD/tests/peers/goplugin/kv.proto"]},
 "services": {"kv.KV": {"Get": [{"response": {"value": "aGVsbG8="}}], "Put": [{"response": {}}]}}}
EOF2

measure() { # label start_cmd
  "$bin" -q client --spec "$work/spec.json" --start-cmd "$2" --json 2>/dev/null > "$work/report.json" \
    || { echo "run failed: $1" >&2; exit 1; }
  python3 - "$1" "$work/report.json" <<'PY'
import json, sys
label, path = sys.argv[1], sys.argv[2]
ms = sorted(c["elapsed_ms"] for c in json.load(open(path))["calls"])
print("%s %.4f %.4f %d" % (label, ms[len(ms) // 2], ms[int(len(ms) * 0.9)], len(ms)))
PY
}

plugin_mock="$bin -q server --spec $work/mock.json"
plugin_py="$PWD/.venv-goplugin/bin/python $PWD/tests/peers/goplugin/kv_plugin.py"
{
  for p in mock py; do
    cmd=$([ "$p" = mock ] && echo "$plugin_mock" || echo "$plugin_py")
    measure "$p direct" "$cmd"
    measure "$p wrapped" "sh -c 'exec $bin proxy --protocol go-plugin --no-reflection --proto $PWD/tests/peers/goplugin/kv.proto -- $cmd 2>/dev/null'"
    measure "$p wrapped-q" "sh -c 'exec $bin -q proxy --protocol go-plugin --no-reflection --proto $PWD/tests/peers/goplugin/kv.proto -- $cmd 2>/dev/null'"
  done
} > "$work/results"

python3 - "$work/results" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
base = {}
print("%-10s %-10s %9s %9s %8s %10s" % ("plugin", "path", "p50 ms", "p90 ms", "p50 x", "added p50"))
for plugin, path, p50, p90, count in rows:
    p50, p90 = float(p50), float(p90)
    if path == "direct":
        base[plugin] = p50
    b = base[plugin]
    print("%-10s %-10s %9.3f %9.3f %8.2f %8.3f ms" % (plugin, path, p50, p90, p50 / b, p50 - b))
print("(%s calls per run, one at a time)" % rows[0][4])
PY

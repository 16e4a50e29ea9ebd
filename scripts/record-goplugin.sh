#!/usr/bin/env bash
# Regenerates recordings/goplugin-python-kv.jsonl: plugtap's client role is
# the go-plugin host (specs/goplugin-client-kv.json: handshake, health, KV
# calls, a server stream, a brokered callback server, shutdown), and the
# plugin it starts is plugtap's go-plugin wrapper recording the Python KV
# plugin (tests/peers/goplugin/kv_plugin.py, PyPI grpcio). Then exports it:
# specs/export-goplugin-python-kv-{server,client}.json.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-goplugin-peer.sh
cargo build --quiet --locked
bin=target/debug/plugtap
out=recordings/goplugin-python-kv.jsonl
"$bin" -q client --spec specs/goplugin-client-kv.json --start-cmd \
  "$bin proxy --protocol go-plugin --record $out -- .venv-goplugin/bin/python tests/peers/goplugin/kv_plugin.py"
echo "wrote $out" >&2
# Its exports, which tests re-export and compare.
for role in server client; do
  "$bin" export "$out" --as "$role" -o "specs/export-goplugin-python-kv-$role.json"
  echo "wrote specs/export-goplugin-python-kv-$role.json" >&2
done

#!/usr/bin/env bash
# Regenerates recordings/prox-python.jsonl: plugtap's client stands in for
# prox (specs/prox-client.json: two routes configured, hooks over two
# connections) and starts, as its plugin command, plugtap's prox wrapper
# around the Python prox-style plugin (tests/peers/prox/prox_plugin.py, PyPI
# msgpack), which records the stdin/stdout lines and every hook frame. The
# plugin listens where prox's SDK does (/tmp/prox-p-PID.sock), so the
# recorded command runs as it is from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python-prox.sh
cargo build --quiet --locked
bin=target/debug/plugtap
"$bin" -q client --spec specs/prox-client.json --start-cmd \
  "$bin proxy --protocol prox --record recordings/prox-python.jsonl -- .venv-prox/bin/python tests/peers/prox/prox_plugin.py"
echo "wrote recordings/prox-python.jsonl" >&2
for target in server client; do
  "$bin" export recordings/prox-python.jsonl --as "$target" -o "specs/export-prox-python-$target.json"
  echo "wrote specs/export-prox-python-$target.json" >&2
done

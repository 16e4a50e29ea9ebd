#!/usr/bin/env bash
# Regenerates the recordings in recordings/: plugtap's proxy in wrapper mode
# starts the real Python pluginserver (PyPI kong-pdk, plugin
# tests/peers/python/hello_peer.py), the client role drives a full event cycle
# through it (specs/client-event-cycle.json), and the proxy records.
#   recordings/python-event-cycle.jsonl   everything, raw bytes included
#   recordings/python-redacted.jsonl      the same with --redact greeting
#   recordings/python-interleaved.jsonl   three events in flight on three
#                                         connections (specs/client-interleaved.json)
# Then re-exports the committed specs/export-*.json from them.
# `scripts/record-examples.sh NAME` regenerates only recordings/NAME.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python-peer.sh
cargo build --quiet --locked
bin=target/debug/plugtap
work=$(mktemp -d /tmp/plugtap-rec.XXXXXX)
trap 'rm -rf "$work"' EXIT

record() { # record NAME SPEC [proxy options...]
  local name=$1 spec=$2; shift 2
  if [ -n "${only:-}" ] && [ "$only" != "$name" ]; then return; fi
  "$bin" proxy --listen "$work/front.sock" --upstream "$work/py.sock" \
    --record "recordings/$name.jsonl" "$@" -- \
    .venv-peer/bin/kong-python-pluginserver -d tests/peers/python -p "$work" --socket-name py.sock &
  local proxy=$!
  for _ in $(seq 100); do [ -S "$work/front.sock" ] && break; sleep 0.1; done
  "$bin" -q client --spec "$spec" --socket "$work/front.sock"
  kill -TERM "$proxy"
  wait "$proxy"
  echo "wrote recordings/$name.jsonl" >&2
}

only=${1:-}
record python-event-cycle specs/client-event-cycle.json
record python-redacted specs/client-event-cycle.json --redact greeting
record python-interleaved specs/client-interleaved.json

for name in python-event-cycle python-interleaved; do
  for as in server client; do
    "$bin" export "recordings/$name.jsonl" --as "$as" -o "specs/export-$name-$as.json"
  done
done

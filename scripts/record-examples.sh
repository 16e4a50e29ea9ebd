#!/usr/bin/env bash
# Regenerates the recordings in recordings/: plugtap's proxy in wrapper mode
# starts the real Python pluginserver (PyPI kong-pdk, plugin
# tests/peers/python/hello_peer.py), the client role drives a full event cycle
# through it (specs/client-event-cycle.json), and the proxy records.
#   recordings/python-event-cycle.jsonl   everything, raw bytes included
#   recordings/python-redacted.jsonl      the same with --redact greeting
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python-peer.sh
cargo build --quiet --locked
bin=target/debug/plugtap
work=$(mktemp -d /tmp/plugtap-rec.XXXXXX)
trap 'rm -rf "$work"' EXIT

record() { # record NAME [proxy options...]
  local name=$1; shift
  "$bin" proxy --listen "$work/front.sock" --upstream "$work/py.sock" \
    --record "recordings/$name.jsonl" "$@" -- \
    .venv-peer/bin/kong-python-pluginserver -d tests/peers/python -p "$work" --socket-name py.sock &
  local proxy=$!
  for _ in $(seq 100); do [ -S "$work/front.sock" ] && break; sleep 0.1; done
  "$bin" -q client --spec specs/client-event-cycle.json --socket "$work/front.sock"
  kill -TERM "$proxy"
  wait "$proxy"
  echo "wrote recordings/$name.jsonl" >&2
}

record python-event-cycle
record python-redacted --redact greeting

#!/usr/bin/env bash
# Sets up and runs a demo: a mock pluginserver made from specs/mock-hello.json,
# driven by plugtap's client role through a full Kong event cycle
# (specs/client-event-cycle.json); then the same client spec against the real
# Python pluginserver (PyPI kong-pdk), which the script installs first; then
# the Kong emulation (specs/kong-hello.json) and `plugtap check` against it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python-peer.sh
cargo build --quiet --locked
bin=target/debug/plugtap
work=$(mktemp -d /tmp/plugtap-demo.XXXXXX)
cleanup() { kill "$server_pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

echo "== 1. mock server (specs/mock-hello.json) driven by the client role"
"$bin" -q server --spec specs/mock-hello.json --socket "$work/mock.sock" >"$work/server.out" &
server_pid=$!
"$bin" client --spec specs/client-event-cycle.json --socket "$work/mock.sock" --wait 10
kill -INT "$server_pid"; wait "$server_pid" || true
echo "-- the mock's record of that connection (stdout, one JSON line per connection):"
cat "$work/server.out"

echo
echo "== 2. the same client spec against the real Python pluginserver"
"$bin" client --spec specs/client-event-cycle.json --socket "$work/py.sock" \
  --start-cmd ".venv-peer/bin/kong-python-pluginserver -d tests/peers/python -p $work --socket-name py.sock"

echo
echo "== 3. Kong emulation: one request through hello_peer, answered as Kong answers (specs/kong-hello.json)"
"$bin" -q client --spec specs/kong-hello.json --socket "$work/kong.sock" \
  --start-cmd ".venv-peer/bin/kong-python-pluginserver -d tests/peers/python -p $work --socket-name kong.sock"

echo
echo "== 4. plugtap check: does the real Python server behave the way Kong needs?"
"$bin" -q check --socket "$work/check.sock" --plugin hello_peer \
  --start-cmd ".venv-peer/bin/kong-python-pluginserver -d tests/peers/python -p $work --socket-name check.sock" \
  --query-cmd ".venv-peer/bin/kong-python-pluginserver -d tests/peers/python --dump-all-plugins"

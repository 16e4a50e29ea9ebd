#!/usr/bin/env bash
# Sets up and runs a demo:
#  1. a mock pluginserver made from specs/mock-hello.json, with plugtap's proxy
#     in front of it recording, driven by the client role through a full Kong
#     event cycle (specs/client-event-cycle.json);
#  2. `plugtap show` of that recording, as text and as a Mermaid diagram;
#  3. the same client spec through the proxy in wrapper mode, which starts the
#     real Python pluginserver (PyPI kong-pdk, installed first) itself.
#  4. the Kong emulation: one request through the real plugin, answered as
#     Kong answers (specs/kong-hello.json);
#  5. `plugtap check` against the real Python pluginserver;
#  6. capture -> export -> replay: the recording of step 3 becomes a mock
#     (`plugtap export --as server`) that answers the client as the real
#     server did, and Kong's side (`--as client`), replayed against a fresh
#     Python server that hands out other ids.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python-peer.sh
cargo build --quiet --locked
bin=target/debug/plugtap
work=$(mktemp -d /tmp/plugtap-demo.XXXXXX)
server_pid=""; proxy_pid=""
cleanup() {
  for p in $proxy_pid $server_pid; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
wait_sock() { for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.1; done; echo "no socket $1" >&2; exit 2; }

echo "== 1. client -> proxy (recording) -> mock server (specs/mock-hello.json)"
"$bin" -q server --spec specs/mock-hello.json --socket "$work/mock.sock" >"$work/server.out" &
server_pid=$!
wait_sock "$work/mock.sock"
"$bin" proxy --listen "$work/front.sock" --upstream "$work/mock.sock" --record "$work/demo.jsonl" &
proxy_pid=$!
wait_sock "$work/front.sock"
"$bin" client --spec specs/client-event-cycle.json --socket "$work/front.sock"
kill -TERM "$proxy_pid"; wait "$proxy_pid" || true; proxy_pid=""
kill -INT "$server_pid"; wait "$server_pid" || true; server_pid=""

echo
echo "== 2. plugtap show of the recording"
"$bin" show "$work/demo.jsonl"
echo "-- as a Mermaid sequence diagram (plugtap show --format mermaid):"
"$bin" show "$work/demo.jsonl" --format mermaid

echo
echo "== 3. the same client spec through the proxy wrapping the real Python pluginserver"
"$bin" proxy --listen "$work/py-front.sock" --upstream "$work/py.sock" --record "$work/py.jsonl" -- \
  .venv-peer/bin/kong-python-pluginserver -d tests/peers/python -p "$work" --socket-name py.sock &
proxy_pid=$!
wait_sock "$work/py-front.sock"
"$bin" client --spec specs/client-event-cycle.json --socket "$work/py-front.sock"
kill -TERM "$proxy_pid"; wait "$proxy_pid" || true; proxy_pid=""
"$bin" show "$work/py.jsonl" --method HandleEvent

echo
echo "== 4. Kong emulation: one request through hello_peer, answered as Kong answers (specs/kong-hello.json)"
"$bin" -q client --spec specs/kong-hello.json --socket "$work/kong.sock" \
  --start-cmd ".venv-peer/bin/kong-python-pluginserver -d tests/peers/python -p $work --socket-name kong.sock"

echo
echo "== 5. plugtap check: does the real Python server behave the way Kong needs?"
"$bin" -q check --socket "$work/check.sock" --plugin hello_peer \
  --start-cmd ".venv-peer/bin/kong-python-pluginserver -d tests/peers/python -p $work --socket-name check.sock" \
  --query-cmd ".venv-peer/bin/kong-python-pluginserver -d tests/peers/python --dump-all-plugins"

echo
echo "== 6. capture -> export -> replay, from the recording of step 3"
"$bin" export "$work/py.jsonl" --as server -o "$work/exported-server.json"
"$bin" export "$work/py.jsonl" --as client -o "$work/exported-client.json"
echo "-- the exported client spec (server-generated ids are captures):"
grep -E '"(params|capture)"' "$work/exported-client.json"
"$bin" -q server --spec "$work/exported-server.json" --socket "$work/exported.sock" >/dev/null &
server_pid=$!
wait_sock "$work/exported.sock"
echo "-- the hand-written client against the exported mock:"
"$bin" -q client --spec specs/client-event-cycle.json --socket "$work/exported.sock"
kill -INT "$server_pid"; wait "$server_pid" || true; server_pid=""
echo "-- the exported client against a fresh Python server, after another client took ids 0..2:"
.venv-peer/bin/kong-python-pluginserver -d tests/peers/python -p "$work" --socket-name fresh.sock 2>/dev/null &
server_pid=$!
wait_sock "$work/fresh.sock"
"$bin" -q client --spec specs/client-interleaved.json --socket "$work/fresh.sock"
"$bin" -q client --spec "$work/exported-client.json" --socket "$work/fresh.sock"

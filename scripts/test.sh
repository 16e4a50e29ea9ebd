#!/usr/bin/env bash
# Runs every test. Installs what the tests need first: the real Python
# pluginserver (PyPI kong-pdk) into .venv-peer/, the Python protobuf
# runtime that made the ProtoBuf:1 test vectors into .venv-proto/, the
# Python go-plugin plugin's grpcio into .venv-goplugin/, and PyPI msgpack
# (the prox test plugin and vectors) into .venv-prox/. Extra arguments go to
# `cargo test` (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python-peer.sh
scripts/setup-python-protobuf.sh
scripts/setup-goplugin-peer.sh
scripts/setup-python-prox.sh
cargo test --locked "$@"

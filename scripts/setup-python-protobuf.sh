#!/usr/bin/env bash
# Installs the official Python protobuf runtime (PyPI `protobuf`) and its
# compiler (PyPI `grpcio-tools`, which bundles protoc) into .venv-proto/ at
# the project root. scripts/gen-protobuf-vectors.py uses them to produce the
# ProtoBuf:1 test vectors independently of plugtap. Idempotent.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv-proto"
GRPCIO_TOOLS_VERSION="${GRPCIO_TOOLS_VERSION:-1.85.1}"
PROTOBUF_VERSION="${PROTOBUF_VERSION:-7.36.2}"
if [ -x "$venv/bin/python" ] \
    && "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('grpcio-tools') != '$GRPCIO_TOOLS_VERSION' or m.version('protobuf') != '$PROTOBUF_VERSION')" 2>/dev/null; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "grpcio-tools==$GRPCIO_TOOLS_VERSION" "protobuf==$PROTOBUF_VERSION"
echo "installed grpcio-tools $GRPCIO_TOOLS_VERSION and protobuf $PROTOBUF_VERSION into $venv" >&2

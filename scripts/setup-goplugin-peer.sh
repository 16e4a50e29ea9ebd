#!/usr/bin/env bash
# Installs the real gRPC implementation the go-plugin tests drive: PyPI's
# grpcio, grpcio-health-checking and grpcio-reflection (as in go-plugin's
# guide for non-Go plugins), plus grpcio-tools to generate the Python stubs
# of tests/peers/goplugin/kv.proto and go-plugin's own services, into
# .venv-goplugin/ at the project root. Idempotent.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv-goplugin"
GRPC_VERSION="${GRPC_VERSION:-1.85.1}"
gen="$venv/gen"
stamp="$venv/.plugtap-$GRPC_VERSION"
protos=("$root/tests/peers/goplugin/kv.proto" "$root/src/goplugin/protos/plugin.proto")
if [ -f "$stamp" ] && [ -f "$gen/kv_pb2.py" ] && [ -f "$gen/plugin_pb2.py" ] \
    && [ "$gen/kv_pb2.py" -nt "${protos[0]}" ] && [ "$gen/plugin_pb2.py" -nt "${protos[1]}" ]; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  "grpcio==$GRPC_VERSION" "grpcio-health-checking==$GRPC_VERSION" \
  "grpcio-reflection==$GRPC_VERSION" "grpcio-tools==$GRPC_VERSION"
mkdir -p "$gen"
"$venv/bin/python" -m grpc_tools.protoc -I "$root/tests/peers/goplugin" \
  --python_out="$gen" --grpc_python_out="$gen" "${protos[0]}"
"$venv/bin/python" -m grpc_tools.protoc -I "$root/src/goplugin/protos" \
  --python_out="$gen" --grpc_python_out="$gen" "${protos[1]}"
touch "$stamp"
echo "installed grpcio $GRPC_VERSION and generated stubs into $venv" >&2

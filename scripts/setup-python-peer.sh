#!/usr/bin/env bash
# Installs the real Python pluginserver (PyPI kong-pdk) that the tests and
# demos drive, into .venv-peer/ at the project root. Idempotent.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv-peer"
KONG_PDK_VERSION="${KONG_PDK_VERSION:-0.36}"
if [ -x "$venv/bin/kong-python-pluginserver" ] \
    && "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('kong-pdk') != '$KONG_PDK_VERSION')" 2>/dev/null; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "kong-pdk==$KONG_PDK_VERSION"
echo "installed kong-pdk $KONG_PDK_VERSION into $venv" >&2

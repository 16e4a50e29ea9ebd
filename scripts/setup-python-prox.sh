#!/usr/bin/env bash
# Installs PyPI `msgpack` into .venv-prox/ at the project root. The prox-style
# test plugin (tests/peers/prox/prox_plugin.py) runs on it, and
# scripts/gen-prox-vectors.py uses it to make the prox byte vectors
# independently of plugtap. Idempotent.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv-prox"
MSGPACK_VERSION="${MSGPACK_VERSION:-1.2.4}"
if [ -x "$venv/bin/python" ] \
    && "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('msgpack') != '$MSGPACK_VERSION')" 2>/dev/null; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "msgpack==$MSGPACK_VERSION"
echo "installed msgpack $MSGPACK_VERSION into $venv" >&2

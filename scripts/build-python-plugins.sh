#!/usr/bin/env bash
# Build the Python guest plugins (guest-plugins/python-*/app.py) into WebAssembly
# components with componentize-py, installed into a project-local venv.
#
#   scripts/build-python-plugins.sh [OUT_DIR]     (default OUT_DIR: <repo>/plugins)
#
# Idempotent: the venv and componentize-py are installed once; a plugin is rebuilt
# only when its sources or the WIT are newer than its .wasm. FORCE=1 rebuilds all.
# The Python plugins implement contract 0.2 (wit/cojobs.wit), built against its
# world `plugin-http` (the contract and wasi:http/outgoing-handler): the host
# offers wasi:http to every plugin, answering only the hosts a side file grants.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/plugins}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

COMPONENTIZE_PY_VERSION="0.25.1"
VENV="$ROOT/.cache/venv"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating venv $VENV" >&2
    "$PYTHON" -m venv "$VENV"
fi
if [ "$("$VENV/bin/python" -c 'import importlib.metadata as m
try: print(m.version("componentize-py"))
except m.PackageNotFoundError: pass')" != "$COMPONENTIZE_PY_VERSION" ]; then
    echo "installing componentize-py==$COMPONENTIZE_PY_VERSION" >&2
    "$VENV/bin/pip" install --disable-pip-version-check -q "componentize-py==$COMPONENTIZE_PY_VERSION"
fi
CPY="$VENV/bin/componentize-py"

# True when $1 is missing or older than any file under the given paths.
stale() {
    local out="$1"; shift
    [ -e "$out" ] || return 0
    [ -n "$(find "$@" -type f -newer "$out" -not -path '*/__pycache__/*' -print -quit)" ]
}

built=0
for dir in "$ROOT"/guest-plugins/python-*/; do
    dir="${dir%/}"
    name="$(basename "$dir")"
    [ -f "$dir/app.py" ] || continue
    wasm="$OUT/$name.wasm"
    if [ "${FORCE:-0}" != 1 ] && ! stale "$wasm" "$dir" "$ROOT/wit"; then
        echo "$name: up to date ($wasm)" >&2
        continue
    fi
    echo "$name: building $wasm" >&2
    start=$SECONDS
    # Build to a temporary file so an interrupted build never leaves a fresh-looking output.
    "$CPY" -d "$ROOT/wit" -w plugin-http componentize -p "$dir" app -o "$wasm.tmp" >&2
    mv -f "$wasm.tmp" "$wasm"
    echo "$name: built in $((SECONDS - start)) s, $(stat -c %s "$wasm") bytes" >&2
    built=$((built + 1))
done
echo "python plugins: $built built, output in $OUT" >&2

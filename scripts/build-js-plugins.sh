#!/usr/bin/env bash
# Build the JavaScript guest plugins (guest-plugins/js-*/app.js) into WebAssembly
# components with componentize-js.
#
#   scripts/build-js-plugins.sh [OUT_DIR]     (default OUT_DIR: <repo>/plugins)
#
# The toolchain is pinned by guest-plugins/js-hello/package.json + package-lock.json
# and installed there with `npm ci` (node_modules, gitignored), once; every js-*
# plugin is built with it. A plugin is rebuilt only when its sources, the WIT or
# the lock file are newer than its .wasm. FORCE=1 rebuilds all.
#
# The JS plugins implement contract 0.2 (wit/cojobs.wit, world `plugin`).
# `-d fetch-event` leaves out the incoming-request handler; componentize-js's
# `fetch` stays in, over wasi:http/outgoing-handler, which the host offers to
# every plugin and answers only for the hosts its side file grants.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/plugins}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

TOOLS="$ROOT/guest-plugins/js-hello"
STAMP="$TOOLS/node_modules/.package-lock.json"   # written by npm on every install
if [ ! -e "$STAMP" ] || [ "$TOOLS/package-lock.json" -nt "$STAMP" ] || [ "$TOOLS/package.json" -nt "$STAMP" ]; then
    echo "installing the JS toolchain (npm ci in $TOOLS)" >&2
    (cd "$TOOLS" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
CJS="$TOOLS/node_modules/.bin/componentize-js"

# True when $1 is missing or older than any file under the given paths.
stale() {
    local out="$1"; shift
    [ -e "$out" ] || return 0
    [ -n "$(find "$@" -path '*/node_modules' -prune -o -type f -newer "$out" -print -quit)" ]
}

built=0
for dir in "$ROOT"/guest-plugins/js-*/; do
    dir="${dir%/}"
    name="$(basename "$dir")"
    [ -f "$dir/app.js" ] || continue
    wasm="$OUT/$name.wasm"
    if [ "${FORCE:-0}" != 1 ] && ! stale "$wasm" "$dir" "$ROOT/wit" "$TOOLS/package-lock.json"; then
        echo "$name: up to date ($wasm)" >&2
        continue
    fi
    echo "$name: building $wasm" >&2
    start=$SECONDS
    # Build to a temporary file so an interrupted build never leaves a fresh-looking output.
    # Run from the plugin's directory with a relative entry: componentize-js 0.23.0
    # mangles an absolute source path when the cwd is "/" (it maps the cwd into the
    # build sandbox and strips it as a prefix).
    (cd "$dir" && "$CJS" app.js -w "$ROOT/wit" -n plugin -d fetch-event -o "$wasm.tmp" >&2)
    mv -f "$wasm.tmp" "$wasm"
    echo "$name: built in $((SECONDS - start)) s, $(stat -c %s "$wasm") bytes" >&2
    built=$((built + 1))
done
echo "js plugins: $built built, output in $OUT" >&2

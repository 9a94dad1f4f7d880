#!/usr/bin/env bash
# Build the Rust guest plugins in guest-plugins/ as WebAssembly components
# and install them as <name>.wasm in the plugins directory.
#
# Usage: scripts/build-plugins.sh [OUT_DIR]     (default: <repo>/plugins)
#
# Runnable from any directory. Installs the wasm32-wasip2 target if missing.
# A component is only copied when its content changed, so the mtimes of
# unchanged plugins stay put (the host caches compiled code per file).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$repo/plugins}"
manifest="$repo/guest-plugins/Cargo.toml"
target_dir="$repo/guest-plugins/target"

# Idempotent: a no-op (and quiet) when the target is already installed.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2 >&2
fi

cargo build --release --target wasm32-wasip2 \
    --manifest-path "$manifest" --target-dir "$target_dir"

mkdir -p "$out"
built="$target_dir/wasm32-wasip2/release"

# Each plugin is a workspace member with crate-type cdylib; the SDK is not.
for crate_dir in "$repo"/guest-plugins/*/; do
    crate="$(basename "$crate_dir")"
    [ -f "$crate_dir/Cargo.toml" ] || continue
    grep -q 'cdylib' "$crate_dir/Cargo.toml" || continue
    artifact="$built/${crate//-/_}.wasm"       # cargo turns '-' into '_'
    name="${crate//_/-}"                        # installed name: <name>.wasm
    if [ ! -f "$artifact" ]; then
        echo "error: $artifact was not built" >&2
        exit 1
    fi
    dest="$out/$name.wasm"
    if [ -f "$dest" ] && cmp -s "$artifact" "$dest"; then
        status="unchanged"
    else
        cp "$artifact" "$dest.tmp.$$"
        mv -f "$dest.tmp.$$" "$dest"
        status="updated"
    fi
    printf '%-14s %8d bytes  %s\n' "$name.wasm" "$(wc -c <"$dest")" "$status"
done

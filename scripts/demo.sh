#!/usr/bin/env bash
# The main job, from nothing: build the example plugins and cojobs, queue a
# handful of sample jobs on the embedded SQLite default, run them all with
# `cojobs run --once`, and show the table.
#
# Usage: scripts/demo.sh [DB]   (default: demo.db in the repository, made anew)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

scripts/build-plugins.sh >/dev/null
cargo build --release --quiet
cojobs="$repo/target/release/cojobs"

export COJOBS_DB="${1:-$repo/demo.db}"
export COJOBS_PLUGINS="$repo/plugins"
rm -f "$COJOBS_DB" "$COJOBS_DB-wal" "$COJOBS_DB-shm"

echo "queueing sample jobs into $COJOBS_DB"
"$cojobs" co add research >/dev/null
"$cojobs" queue hello --params '{"name":"Ada"}' --summary "greet Ada"
"$cojobs" queue hello --params '{"name":"Grace"}' --mode fast --co 2 --summary "greet Grace"
"$cojobs" queue primes --params '{"limit":200000}' --summary "count primes"
"$cojobs" queue runaway --fuel 100000000 --retry-interval 1 --max-retry 2 \
    --summary "a plugin that never stops: stopped by fuel, retried twice"
"$cojobs" queue discard --retry-interval 1 --max-retry 3 --summary "fails for good: never retried"

if "$cojobs" run --help >/dev/null 2>&1; then
    echo
    echo "running every due job (cojobs run --once)"
    "$cojobs" run --once --workers 2
fi
echo
"$cojobs" list

#!/usr/bin/env bash
# Peer benchmark: graphile-worker (npm) on the local PostgreSQL, with a no-op
# task, so its rate can be set beside `cojobs bench` measured in the same
# sitting on the same machine. Nothing of the peer is committed: it is
# installed into a cache folder outside the repository.
#
#   bench/peers/graphile-worker.sh [JOBS] [CONCURRENCY]      (defaults 100000, 2)
#
# Environment: PEER_PG (default postgres://postgres@127.0.0.1:5432/test) is
# the server; a database of its own is made and dropped. GW_VERSION picks the
# version (default 0.18.0). It runs two settings: graphile-worker's defaults,
# and its best for throughput (local queue of LOCAL_QUEUE jobs, default 1000,
# and batched completion).
set -euo pipefail
jobs="${1:-100000}"
concurrency="${2:-2}"
version="${GW_VERSION:-0.18.0}"
base="${PEER_PG:-postgres://postgres@127.0.0.1:5432/test}"
work="${XDG_CACHE_HOME:-$HOME/.cache}/cojobs-peers/graphile-worker-$version"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

mkdir -p "$work"
if [ ! -d "$work/node_modules/graphile-worker" ]; then
    echo "installing graphile-worker@$version into $work" >&2
    (cd "$work" && npm init -y >/dev/null && npm install --silent "graphile-worker@$version" >&2)
fi
cp "$here/graphile-worker.mjs" "$work/bench.mjs"

db="cojobs_peer_gw_$$"
admin="${base%/*}/postgres"
psql -q "$admin" -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
trap 'psql -q "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
url="${base%/*}/$db"

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
echo "graphile-worker $version, $jobs no-op jobs, concurrency $concurrency"
for mode in defaults best; do
    (cd "$work" && node bench.mjs "$url" "$jobs" "$concurrency" "$mode" "${LOCAL_QUEUE:-1000}")
done

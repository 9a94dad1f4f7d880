#!/usr/bin/env bash
# Issue 12's load figures (a benchmark, not a test; docs/performance.md):
# the runner's drain rate of N no-op jobs alone, then again while
# `cojobs serve` answers CLIENTS clients polling the jobs list, each with an
# SSE page open (bench/serve_load.py); then the list rate on its own.
#
#   bench/serve_overhead.sh [N=100000] [CLIENTS=20]
#
# Needs a release build (target/release/cojobs) and the example plugins.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N="${1:-100000}"
CLIENTS="${2:-20}"
B="$ROOT/target/release/cojobs"
P="$ROOT/plugins"
D="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$D"' EXIT
python3 -c "import json; [print(json.dumps({'type': 'noop'})) for i in range($N)]" > "$D/jobs.jsonl"

drain() {  # drain DB: seconds for `run --once --workers 2`
    local start end
    start=$(date +%s.%N)
    "$B" --plugins "$P" --db "$1" run --once --workers 2 2>/dev/null
    end=$(date +%s.%N)
    python3 -c "s=$end-$start; print('%d jobs in %.2f s: %.0f jobs/s' % ($N, s, $N/s))"
}

echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
"$B" --plugins "$P" --db "$D/solo.db" queue --from "$D/jobs.jsonl" > /dev/null
echo -n "solo:        "; drain "$D/solo.db"

"$B" --plugins "$P" --db "$D/load.db" queue --from "$D/jobs.jsonl" > /dev/null
"$B" --plugins "$P" --db "$D/load.db" serve --listen 127.0.0.1:18089 > /dev/null 2>&1 &
sleep 1
python3 "$ROOT/bench/serve_load.py" --addr 127.0.0.1:18089 --clients "$CLIENTS" --seconds 600 --sse > "$D/load.txt" &
LOADER=$!
sleep 2
echo -n "with load:   "; drain "$D/load.db"
kill -TERM $LOADER 2>/dev/null || true
wait $LOADER || true
echo -n "  (the clients meanwhile: "; tr -d "\n" < "$D/load.txt"; echo ")"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo -n "list alone:  "
python3 "$ROOT/bench/serve_load.py" --addr 127.0.0.1:18089 --clients "$CLIENTS" --seconds 20
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"

#!/usr/bin/env bash
# Peer benchmark: huey (PyPI), a Python task queue, on SQLite with a no-op
# task and worker threads, so its rate can be set beside `cojobs bench
# --plugin python-hello` measured in the same sitting on the same machine
# (issue 15: sandboxed Python against unsandboxed Python). It runs two
# settings: huey's defaults (SQLite synchronous=FULL) and cojobs' durability
# (WAL + synchronous=NORMAL), the one to compare with. Nothing of the peer
# is committed: it is installed into a venv in a cache folder outside the
# repository.
#
#   bench/peers/huey.sh [JOBS] [WORKERS]      (defaults 10000, 2)
#
# Environment: HUEY_VERSION picks the version (default 3.5.4); PYTHON the
# interpreter the venv is made with (default python3).
set -euo pipefail
jobs="${1:-10000}"
workers="${2:-2}"
version="${HUEY_VERSION:-3.5.4}"
work="${XDG_CACHE_HOME:-$HOME/.cache}/cojobs-peers/huey-$version"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [ ! -x "$work/bin/python" ]; then
    echo "creating venv $work" >&2
    "${PYTHON:-python3}" -m venv "$work"
fi
if ! "$work/bin/python" -c "import huey, sys; sys.exit(huey.__version__ != '$version')" 2>/dev/null; then
    echo "installing huey==$version into $work" >&2
    "$work/bin/pip" install --disable-pip-version-check -q "huey==$version" >&2
fi

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "huey $version ($("$work/bin/python" -V)), SQLite, $jobs no-op tasks, $workers worker threads"
for sync in default normal; do
    "$work/bin/python" "$here/huey_bench.py" "$jobs" "$workers" "$sync"
done

#!/usr/bin/env python3
"""Hold-time probe for SQLite's write lock (docs/performance.md, issue 10
finding 1): try BEGIN IMMEDIATE every 5 ms on DB until STOPFILE exists;
print the longest stretch during which every try was refused.

    python3 bench/ops/lockprobe.py ops.db /tmp/stop &
"""
import sqlite3, sys, time, os

db, stop = sys.argv[1], sys.argv[2]
conn = sqlite3.connect(db, timeout=0, isolation_level=None)
longest, refused_since = 0.0, None
while not os.path.exists(stop):
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        if refused_since is not None:
            longest = max(longest, time.monotonic() - refused_since)
            refused_since = None
    except sqlite3.OperationalError:
        if refused_since is None:
            refused_since = time.monotonic()
    time.sleep(0.005)
if refused_since is not None:
    longest = max(longest, time.monotonic() - refused_since)
print(f"longest refusal of BEGIN IMMEDIATE: {longest:.2f} s")

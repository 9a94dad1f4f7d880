# Run by huey.sh (not named huey.py: it would shadow the package): queue JOBS
# no-op tasks into a SqliteHuey, then time a consumer of WORKERS threads (in
# this process) from its start until every task has run. The task only
# counts itself, so the end is exact. SYNC is SQLite's `synchronous` for
# every connection: "default" leaves huey's (FULL: an fsync per commit),
# "normal" is cojobs' own setting (WAL + NORMAL, durable against a crash of
# the process).
import os
import sys
import tempfile
import threading
import time

from huey import SqliteHuey
from huey.storage import SqliteStorage

jobs, workers, sync = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]


class Storage(SqliteStorage):
    def _create_connection(self):
        conn = super()._create_connection()
        if sync == "normal":
            conn.execute("pragma synchronous=NORMAL")
        return conn


folder = tempfile.mkdtemp(prefix="cojobs-peer-huey-")
db = os.path.join(folder, "huey.db")
huey = SqliteHuey("bench", filename=db, storage_class=Storage)
done = 0
lock = threading.Lock()
all_done = threading.Event()


@huey.task()
def noop():
    global done
    with lock:
        done += 1
        if done == jobs:
            all_done.set()


start = time.perf_counter()
for _ in range(jobs):
    noop()
queued = time.perf_counter() - start

consumer = huey.create_consumer(workers=workers, worker_type="thread", periodic=False)
start = time.perf_counter()
cpu = time.process_time()
consumer.start()
all_done.wait()
secs = time.perf_counter() - start
cpu = time.process_time() - cpu
consumer.stop(graceful=True)
print(
    f"huey synchronous={sync}: queued {jobs} in {queued:.2f} s (one transaction each); "
    f"{workers} threads ran them in {secs:.2f} s = {jobs / secs:.0f} jobs/s "
    f"({cpu / jobs * 1e6:.0f} µs of CPU per job)"
)
for suffix in ("", "-wal", "-shm"):
    if os.path.exists(db + suffix):
        os.remove(db + suffix)
os.rmdir(folder)

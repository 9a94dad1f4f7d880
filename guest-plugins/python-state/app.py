"""python-state: proves that no state passes from one job to the next.

Each run reports what it found in module-level state, then changes all of
it. Every job gets a fresh instance of the component, so every run must
find the state as the build left it: "fresh: seen=None runs=0 cache=0".
"""
import wit_world
from wit_world.imports.cojobs_plugin_types import Job, PluginInfo

SEEN = None
RUNS = 0
CACHE = {}


class WitWorld(wit_world.WitWorld):
    def describe(self) -> PluginInfo:
        return PluginInfo(
            name="python-state",
            version="0.1.0",
            description="Reports the module-level state it finds, then changes it.",
            modes=[],
            params=[],
        )

    def run(self, job: Job) -> str:
        global SEEN, RUNS
        found = f"seen={SEEN!r} runs={RUNS} cache={len(CACHE)}"
        fresh = SEEN is None and RUNS == 0 and not CACHE
        SEEN = job.id
        RUNS += 1
        CACHE[job.id] = "x" * 100_000
        return ("fresh: " if fresh else "stale: ") + found

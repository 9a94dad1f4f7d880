"""python-hello: a cojobs plugin in Python, built with componentize-py.

Contract 0.2. Build: scripts/build-python-plugins.sh
  (componentize-py -d wit -w plugin-http componentize app)
The class that implements the world's exports must be called `WitWorld`. The
world `plugin-http` also imports wasi:http, whose `types` takes that module name:
the cojobs types are `wit_world.imports.cojobs_plugin_types`.

WIT -> Python: run() returns the summary string for ok(...); the failure variant is
raised as `componentize_py_types.Err(Failure_Retry("..."))` / `Err(Failure_Discard("..."))`
(and `Err(Failure_RetryAfter(RetryLater(seconds, "...")))`).
Any other exception traps the component: the traceback goes to stderr, ending with
"RuntimeError: <message>" and then componentize-py's
"thread '<unnamed>' (1) panicked at ...: Python function threw an unexpected exception".
Enums are Python Enums (LogLevel.INFO, HistoryStatus.OK); option<T> is a value or None.
"""
import json
import time

import wit_world
from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports.cojobs_plugin_types import (
    Failure_Discard,
    Failure_Retry,
    HistoryRecord,
    HistoryStatus,
    Job,
    LogLevel,
    ParamSpec,
    ParamType,
    PluginInfo,
)

OUTCOMES = ["ok", "retry", "discard", "raise"]


class WitWorld(wit_world.WitWorld):
    def describe(self) -> PluginInfo:
        return PluginInfo(
            name="python-hello",
            version="0.2.0",
            description="Greets someone from Python; can succeed, fail or explode on request.",
            modes=["fast", "slow"],
            params=[
                ParamSpec(
                    name="name",
                    help="Who to greet.",
                    kind=ParamType.TEXT,
                    required=False,
                    choices=[],
                    default=json.dumps("world"),
                ),
                ParamSpec(
                    name="outcome",
                    help="How the run ends: ok, retry, discard, or raise (an uncaught exception).",
                    kind=ParamType.TEXT,
                    required=False,
                    choices=OUTCOMES,
                    default=json.dumps("ok"),
                ),
            ],
        )

    def run(self, job: Job) -> str:
        params = json.loads(job.params or "{}")
        name = str(params.get("name", "world"))
        outcome = str(params.get("outcome", "ok"))
        slow = job.mode == "slow"

        host.progress(0, f"greeting {name}")
        host.log(LogLevel.INFO, f"python-hello job {job.id} (attempt after {job.retry_count} retries): name={name!r} outcome={outcome}")
        if slow:
            for _ in range(10):
                if host.cancel_requested():
                    raise Err(Failure_Discard("cancelled"))
                time.sleep(0.1)
        host.progress(50, "half way")
        host.record_history(HistoryRecord(record_key=name, comment=f"greeted {name}", status=HistoryStatus.OK, co_person_id=None, org_identity_id=None))

        if outcome == "retry":
            raise Err(Failure_Retry(f"python asked to retry: {name}"))
        if outcome == "discard":
            raise Err(Failure_Discard(f"python gave up: {name}"))
        if outcome == "raise":
            raise RuntimeError(f"python exploded: {name}")

        host.progress(100, "done")
        return f"hello, {name} from Python"

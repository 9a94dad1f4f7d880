"""python-runaway: a cojobs plugin whose run never returns (fuel must stop it)."""
import wit_world
from wit_world.imports.cojobs_plugin_types import Job, PluginInfo


class WitWorld(wit_world.WitWorld):
    def describe(self) -> PluginInfo:
        return PluginInfo(
            name="python-runaway",
            version="0.2.0",
            description="Loops forever; the sandbox's fuel limit must stop it.",
            modes=[],
            params=[],
        )

    def run(self, job: Job) -> str:
        while True:
            pass

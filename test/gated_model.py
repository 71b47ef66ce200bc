"""A model factory for tests of a controller process: the analytic model, whose every step
waits while a file named ``hold`` exists (a solve that takes as long as the test wants), after
touching ``hold + ".waiting"`` (so the test knows a solve is held).

Not a test module; the tests name it as ``gated_model:make`` (allow_python_models:=true).
"""
import time
from pathlib import Path

from grasp_ros.sim.analytic import AnalyticNavModel


class GatedModel(AnalyticNavModel):
    def __init__(self, hold: str, **options):
        super().__init__(**options)
        self.hold = Path(hold)

    def _wait(self) -> None:
        if self.hold.exists():
            Path(f"{self.hold}.waiting").touch()
            while self.hold.exists():
                time.sleep(0.01)

    def predict(self, latent, action):
        self._wait()
        return super().predict(latent, action)

    def rollout(self, z0, actions):
        self._wait()
        return super().rollout(z0, actions)


def make(hold: str, env: str = "open", horizon: int = 20):
    return GatedModel(hold, env=env, horizon=horizon)

"""A harmless Python model factory for the allow_python_models tests: it leaves a marker file.

Not a test module (pytest does not collect it); the tests name it as ``model_factory_marker:make``
and check, by the marker and by ``sys.modules``, whether it was imported and called.
"""
from pathlib import Path

from grasp_ros.sim.analytic import AnalyticNavModel


def make(marker: str, env: str = "open", horizon: int = 20):
    Path(marker).write_text("the factory ran\n", encoding="utf-8")
    return AnalyticNavModel(env=env, horizon=horizon)

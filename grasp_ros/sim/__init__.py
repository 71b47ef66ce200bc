"""The sim room: 2-D navigation simulators that render camera images, their exact model
(``analytic``), the MuJoCo planar arm (``arm``, imported on demand: it needs MuJoCo), the sim
node and the closed-loop harness. Yardsticks for tests, benchmarks, training and demos; the
controller does not import this room."""
from .dynamics import PointMassDynamics
from .layouts import LAYOUTS, Layout
from .nav import ENV_NAMES, NOMINAL_HORIZON, Episode, NavEnv, make_env

__all__ = ["ENV_NAMES", "LAYOUTS", "NOMINAL_HORIZON", "Episode", "Layout", "NavEnv",
           "PointMassDynamics", "make_env"]

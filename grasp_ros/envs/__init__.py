"""Small simulators that render camera images: used by tests, benchmarks, training and the sim node."""
from .dynamics import PointMassDynamics
from .layouts import LAYOUTS, Layout
from .nav import ENV_NAMES, NOMINAL_HORIZON, Episode, NavEnv, make_env

__all__ = ["ENV_NAMES", "LAYOUTS", "NOMINAL_HORIZON", "Episode", "Layout", "NavEnv",
           "PointMassDynamics", "make_env"]

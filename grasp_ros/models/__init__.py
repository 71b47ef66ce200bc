"""World models: the contract, the loader, and the built-in models."""
from .analytic import AnalyticNavModel
from .contract import (Observation, WorldModel, WorldModelError, check_world_model,
                       split_prediction)
from .loader import BUILTINS, load_world_model, register_builtin
from . import learned  # noqa: E402,F401  registers the "learned" built-in

__all__ = ["AnalyticNavModel", "BUILTINS", "Observation", "WorldModel", "WorldModelError",
           "check_world_model", "load_world_model", "register_builtin", "split_prediction"]

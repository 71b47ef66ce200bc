"""World models: the contract, the loader, and the built-in models."""
from .contract import (Observation, WorldModel, WorldModelError, check_world_model,
                       split_prediction)
from .loader import load_world_model
from .spec import BUILTINS, model_spec, parse_options, register_builtin
from . import learned  # noqa: E402,F401  registers the "learned" built-in

__all__ = ["BUILTINS", "Observation", "WorldModel", "WorldModelError",
           "check_world_model", "load_world_model", "model_spec", "parse_options", "register_builtin", "split_prediction"]

"""Build a ``ControlLoop`` from plain settings: device, model spec, planner (what a node configures)."""
from __future__ import annotations

import os
from typing import Any, Optional

import torch
import yaml

from ..models import BUILTINS, load_world_model
from ..planning import make_planner
from .cycle import ControlConfig, ControlLoop


def resolve_device(requested: str) -> tuple[torch.device, Optional[str]]:
    """"auto", "cpu", "cuda" or "cuda:N" -> (device, warning or None).

    "auto" takes CUDA when there is one and otherwise falls back to the CPU with a warning;
    an explicit "cuda" without CUDA is an error (the user asked for something impossible).
    """
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda"), None
        return torch.device("cpu"), "device 'auto': no CUDA device available, using the CPU"
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {requested!r}") from exc
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {requested!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} requested but CUDA is not available (use 'auto' or 'cpu')")
    return device, None


def parse_options(text: str) -> dict[str, Any]:
    """A YAML mapping written as a string ("{env: wall_door, horizon: 50}"); "" is no options."""
    if not text.strip():
        return {}
    try:
        options = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"model_options is not valid YAML: {exc}") from exc
    if options is None:
        return {}
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise ValueError(f"model_options must be a YAML mapping such as '{{env: wall_door}}', got {text!r}")
    return options


def model_spec(model: str, weights: str = "", options: Optional[dict] = None) -> dict[str, Any]:
    """The ``load_world_model`` spec for a built-in name, a TorchScript path or module:factory."""
    if not model:
        raise ValueError("model is empty: give a built-in name, a TorchScript path or module:factory")
    options = options or {}
    if model in BUILTINS:
        spec: dict[str, Any] = {"name": model, "options": options}
    elif ":" in model and not os.path.exists(model) and not model.endswith((".ts", ".pt")):
        spec = {"factory": model, "options": options}
    else:
        if options:
            raise ValueError(f"model_options {options} cannot apply to the TorchScript file {model!r}")
        if weights:
            raise ValueError(f"model_weights cannot apply to the TorchScript file {model!r} "
                             "(it holds its weights)")
        return {"torchscript": model}
    if weights:
        spec["weights"] = weights
    return spec


def build_control_loop(spec: dict, planner: str, horizon: int, config: ControlConfig,
                       planner_settings: Optional[dict[str, Any]] = None, seed: int = 0,
                       device: torch.device | str = "cpu") -> ControlLoop:
    """Load the model, make the planner, and warm both up. Raises ``WorldModelError`` or
    ``ValueError`` (or whatever a user's model raises while warming up) with the reason."""
    model = load_world_model(spec, device)
    loop = ControlLoop(model, make_planner(planner, model, horizon, planner_settings, seed, device),
                       config)
    loop.warm_up()
    return loop

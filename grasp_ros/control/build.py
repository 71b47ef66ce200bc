"""Build a ``ControlLoop`` from plain settings: device, model spec (``grasp_ros.models.spec``),
planner (what a node configures)."""
from __future__ import annotations

from typing import Any, Optional

import torch

from ..models import load_world_model
from ..models.text import quote
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
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {quote(requested)}") from exc
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {quote(requested)}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {quote(requested)} requested but CUDA is not available "
                         "(use 'auto' or 'cpu')")
    return device, None


def build_control_loop(spec: dict, planner: str, horizon: int, config: ControlConfig,
                       planner_settings: Optional[dict[str, Any]] = None, seed: int = 0,
                       device: torch.device | str = "cpu",
                       allow_factory: bool = False) -> ControlLoop:
    """Load the model, make the planner, and warm both up. Raises ``WorldModelError`` or
    ``ValueError`` (or whatever a user's model raises while warming up) with the reason.

    ``allow_factory``: load a ``package.module:function`` model or cost term (runs that
    module's code); see ``load_world_model`` and ``make_planner``."""
    model = load_world_model(spec, device, allow_factory=allow_factory)
    loop = ControlLoop(model, make_planner(planner, model, horizon, planner_settings, seed, device,
                                           allow_python=allow_factory), config)
    loop.warm_up()
    return loop

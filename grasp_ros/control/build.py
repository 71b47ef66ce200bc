"""Build a ``ControlLoop`` from plain settings: device, model spec, planner (what a node configures)."""
from __future__ import annotations

import os
from typing import Any, Optional

import torch
import yaml

from ..models import BUILTINS, load_world_model
from ..models.text import quote, shorten
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


MAX_OPTIONS_CHARS = 4096
"""Longest model_options text accepted."""
MAX_OPTIONS_DEPTH = 16
"""Deepest nesting of mappings and lists in model_options."""
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML has it: the same values, and linear time on nesting that
the pure-Python scanner takes quadratic time over."""


def parse_options(text: str) -> dict[str, Any]:
    """A YAML mapping written as a string ("{env: wall_door, horizon: 50}"); "" is no options.

    Plain YAML only: at most ``MAX_OPTIONS_CHARS`` characters, nested at most
    ``MAX_OPTIONS_DEPTH`` deep, and no anchors or aliases (``&a``, ``*a``), which would let a few
    hundred characters expand to gigabytes ("billion laughs"). These are checked on the parser's
    events, before anything is built. Raises ``ValueError`` with the reason.
    """
    if len(text) > MAX_OPTIONS_CHARS:
        raise ValueError(f"model_options is {len(text)} characters long; at most {MAX_OPTIONS_CHARS}")
    if not text.strip():
        return {}
    try:
        _check_plain_yaml(text)
        options = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise ValueError(f"model_options is not valid YAML: {shorten(exc)}") from exc
    if options is None:
        return {}
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise ValueError(f"model_options must be a YAML mapping such as '{{env: wall_door}}', "
                         f"got {quote(text)}")
    return options


def _check_plain_yaml(text: str) -> None:
    """Refuse anchors, aliases and deep nesting, from the parser's events (nothing expanded)."""
    depth = 0
    for event in yaml.parse(text, Loader=_YAML_LOADER):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise ValueError("model_options must not use YAML anchors or aliases (&name, *name)")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_OPTIONS_DEPTH:
                raise ValueError(f"model_options is nested more than {MAX_OPTIONS_DEPTH} deep")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


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
            raise ValueError(f"model_options {quote(options)} cannot apply to the TorchScript file "
                             f"{quote(model)}")
        if weights:
            raise ValueError(f"model_weights cannot apply to the TorchScript file {quote(model)} "
                             "(it holds its weights)")
        return {"torchscript": model}
    if weights:
        spec["weights"] = weights
    return spec


def build_control_loop(spec: dict, planner: str, horizon: int, config: ControlConfig,
                       planner_settings: Optional[dict[str, Any]] = None, seed: int = 0,
                       device: torch.device | str = "cpu",
                       allow_factory: bool = False) -> ControlLoop:
    """Load the model, make the planner, and warm both up. Raises ``WorldModelError`` or
    ``ValueError`` (or whatever a user's model raises while warming up) with the reason.

    ``allow_factory``: load a ``package.module:function`` model (runs that module's code);
    see ``load_world_model``."""
    model = load_world_model(spec, device, allow_factory=allow_factory)
    loop = ControlLoop(model, make_planner(planner, model, horizon, planner_settings, seed, device),
                       config)
    loop.warm_up()
    return loop

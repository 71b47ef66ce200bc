"""``load_world_model(spec)``: a built-in by name, a TorchScript file, or module:factory + weights.

Spec forms (a string, or a dict with the same keys):

* ``"analytic"`` or ``{"name": "analytic", "env": "wall_door", "horizon": 50}``: a built-in.
* ``"path/to/model.ts"`` / ``{"torchscript": path}``: a TorchScript module meeting the contract.
* ``{"factory": "package.module:make_model", "weights": "model.pt", "options": {...}}``: the
  factory builds the module, then a state dict is loaded with ``torch.load(weights_only=True)``,
  so no arbitrary object is ever unpickled. Importing the module and calling the factory runs
  its Python code, so a factory loads only with ``allow_factory=True``: whoever chooses the
  spec must be trusted to run code in this process (the controller node's
  ``allow_python_models``, set at start-up only).

Every failure raises ``WorldModelError`` naming the spec and the problem, quoting user input
(names, paths, options, a factory's own error) at most a few hundred characters long.
"""
from __future__ import annotations

import importlib
import os
from typing import Any

import torch

from .archive import DamagedArchive, check_archive, load_checked
from .contract import WorldModelError, check_world_model, error_text
from .spec import BUILTINS, model_spec
from .text import quote, shorten

# The navigation sims' exact model is a yardstick of the sim room: named here by its path and
# imported only when a spec asks for it, so nothing that loads models depends on the sims.
BUILTINS["analytic"] = "grasp_ros.sim.analytic:AnalyticNavModel"


FACTORY_DISABLED = ("Python factory models are disabled: start the node with "
                    "allow_python_models:=true (in Python: allow_factory=True)")


def load_world_model(spec: Any, device: str | torch.device = "cpu",
                     allow_factory: bool = False) -> torch.nn.Module:
    """Build, check (probe call) and return the model named by ``spec``, in eval mode with its
    weights frozen.

    A factory spec (``package.module:function``) is refused unless ``allow_factory``: it
    imports and runs that module's code.
    """
    spec = _normalise(spec)
    source = _describe(spec)
    if "name" in spec:
        model = _build_builtin(spec, source)
    elif "torchscript" in spec:
        model = _load_torchscript(spec["torchscript"], source)
    elif not allow_factory:
        raise WorldModelError(f"{source}: {FACTORY_DISABLED}")
    else:
        model = _build_from_factory(spec, source)
    model = model.to(device).eval()
    # Planners differentiate through the model's inputs only, never train it: with frozen
    # weights a backward pass skips their gradients (a GRASP plan of the learned model: ~25% less
    # time, the same plan to the bit).
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    check_world_model(model, source)
    return model


def _normalise(spec) -> dict:
    if isinstance(spec, dict):
        spec = dict(spec)
    elif isinstance(spec, (str, os.PathLike)):
        try:
            spec = model_spec(str(spec))
        except ValueError as exc:
            raise WorldModelError(str(exc)) from exc
    else:
        raise WorldModelError(f"model spec must be a name, a path or a dict, got {type(spec).__name__}")
    kinds = [k for k in ("name", "torchscript", "factory") if k in spec]
    if len(kinds) != 1:
        raise WorldModelError(f"model spec {quote(spec)} must have exactly one of 'name', 'torchscript', "
                              "'factory'")
    return spec


def _describe(spec: dict) -> str:
    for key in ("name", "torchscript", "factory"):
        if key in spec:
            return f"world model {key}={quote(spec[key])}"
    return "world model"


def _build_builtin(spec: dict, source: str):
    name = spec["name"]
    if name not in BUILTINS:
        raise WorldModelError(f"{source}: unknown built-in; choose one of {sorted(BUILTINS)}")
    options = {k: v for k, v in spec.items() if k not in ("name", "weights")}
    options.update(spec.get("options", {}) or {})
    options.pop("options", None)
    factory = BUILTINS[name]
    if isinstance(factory, str):
        module_name, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
    try:
        model = factory(**options)
    except (TypeError, ValueError, OSError) as exc:
        raise WorldModelError(f"{source}: bad options {quote(options)}: {error_text(exc)}") from exc
    if spec.get("weights"):
        _load_weights(model, spec["weights"], source)
    return model


def _load_torchscript(path: str, source: str):
    if not os.path.isfile(path):
        raise WorldModelError(f"{source}: file not found")
    from .scripted import ScriptedWorldModel, load
    try:
        check_archive(path)
    except DamagedArchive as exc:
        raise WorldModelError(f"{source}: {exc}") from exc
    try:
        module = load(path)
    except Exception as exc:  # torch raises RuntimeError/ValueError/zip errors for bad files
        hint = ("; a checkpoint of grasp-ros train loads as the built-in: model learned, "
                f"model_options {{checkpoint: {shorten(path)}}}" if str(path).endswith(".pt") else "")
        raise WorldModelError(f"{source}: not a TorchScript file "
                              f"({type(exc).__name__}: {shorten(exc)}){hint}") from exc
    return ScriptedWorldModel(module)


def _build_from_factory(spec: dict, source: str):
    target = str(spec["factory"])
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise WorldModelError(f"{source}: factory must look like 'package.module:function'")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise WorldModelError(f"{source}: factory not found ({shorten(exc)})") from exc
    try:
        model = factory(**(spec.get("options") or {}))
    except Exception as exc:  # a user's factory may raise anything; report it as a model error
        raise WorldModelError(f"{source}: factory raised {type(exc).__name__}: {shorten(exc)}") from exc
    if not isinstance(model, torch.nn.Module):
        raise WorldModelError(f"{source}: factory returned {type(model).__name__}, not a torch.nn.Module")
    if spec.get("weights"):
        _load_weights(model, spec["weights"], source)
    return model


def _load_weights(model: torch.nn.Module, path: str, source: str) -> None:
    if not os.path.isfile(path):
        raise WorldModelError(f"{source}: weights file {quote(path)} not found")
    try:
        state = load_checked(path)
    except Exception as exc:  # corrupt zip, pickle of a non-tensor object, truncated file...
        raise WorldModelError(f"{source}: cannot read weights {quote(path)} "
                              f"({type(exc).__name__}: {shorten(exc)})") from exc
    carried = None
    if isinstance(state, dict) and "state_dict" in state:
        carried = state.get("input_statistics")
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WorldModelError(f"{source}: weights {quote(path)} hold a {type(state).__name__}, "
                              "not a state dict")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise WorldModelError(f"{source}: weights {quote(path)} do not fit the model: "
                              f"{shorten(exc, 300)}") from exc
    # Novelty statistics describe the weights they were measured with: the new file's, or none.
    if isinstance(carried, dict) or "input_statistics" in vars(model):
        model.input_statistics = dict(carried) if isinstance(carried, dict) else None

"""What a model spec is: the one place that reads the controller's ``model`` / ``model_weights`` /
``model_options`` (or a command line's) into a ``load_world_model`` spec.

* a built-in name (``learned``, ``analytic``, ...) -> ``{"name": ..., "options": {...}}``
* ``package.module:function`` (not an existing file) -> ``{"factory": ..., "options": {...}}``
* anything else is a TorchScript file -> ``{"torchscript": path}`` (no options, no weights)
"""
from __future__ import annotations

import os
from typing import Any, Callable, Optional

import torch
import yaml

from .text import quote, shorten

BUILTINS: dict[str, Callable[..., torch.nn.Module] | str] = {}
"""Built-in models by name: a factory, or the ``module:function`` path of one in a room that
model loading must not import up front (imported from the package when first asked for)."""


def register_builtin(name: str):
    """Decorator: make a factory loadable as ``load_world_model(name)``."""
    def wrap(factory):
        BUILTINS[name] = factory
        return factory
    return wrap


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
        if (options or weights) and not os.path.exists(model):
            # (a mistyped name: what it is not, rather than which options cannot apply to it)
            raise ValueError(f"model {quote(model)} is neither a built-in model ({', '.join(sorted(BUILTINS))}) "
                             "nor an existing TorchScript file, nor package.module:factory")
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

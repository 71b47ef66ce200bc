"""TorchScript, the one way this package compiles: model exports and serial rollouts."""
from __future__ import annotations

import warnings

import torch


def script(obj):
    """``torch.jit.script(obj)`` without torch's deprecation warning: torch >= 2.10 flags
    TorchScript as deprecated, but it is the export format robots load without Python classes,
    and it runs a serial rollout without Python between the steps, with no compiler toolchain."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(obj)

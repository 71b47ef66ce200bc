"""TorchScript in this package: the adapter that lets a TorchScript module meet the world-model
contract like any other model, and the one place that scripts and loads it.

torch >= 2.10 flags TorchScript as deprecated; it stays this package's format: the export robots
load without Python classes, and a serial rollout run without Python between the steps, with no
compiler toolchain. ``script`` and ``load`` say so once, without the warning.
"""
from __future__ import annotations

import warnings

import torch

from .contract import Observation, WorldModel, WorldModelError


def script(obj):
    """``torch.jit.script(obj)``, without the deprecation warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(obj)


def load(path: str) -> torch.jit.ScriptModule:
    """``torch.jit.load(path)`` onto the CPU, without the deprecation warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(path, map_location="cpu")


class ScriptedWorldModel(WorldModel):
    """Wraps a ``torch.jit.ScriptModule`` exporting encode/predict and the contract's attributes."""

    def __init__(self, module: torch.jit.ScriptModule):
        for name in ("latent_dim", "action_dim", "action_low", "action_high"):
            if not hasattr(module, name):
                raise WorldModelError(f"TorchScript module has no attribute {name!r}")
        super().__init__(module.action_low, module.action_high)
        self.module = module
        self.latent_dim, self.action_dim = int(module.latent_dim), int(module.action_dim)
        self.image_size = int(getattr(module, "image_size", 0))
        self.image_frames = int(getattr(module, "image_frames", 1))
        self.joint_dim = int(getattr(module, "joint_dim", 0))
        self._has_goal_encoder = hasattr(module, "encode_goal")
        self._has_position = hasattr(module, "position")
        if hasattr(module, "decode_state"):      # the joint head: joint-space goals and limits
            self.decode_state = module.decode_state
        if hasattr(module, "serial_rollout"):    # the learned model's whole rollout in TorchScript
            self.rollout = module.serial_rollout
        self.card_json = str(getattr(module, "card_json", "") or "")   # grasp_ros.models.card, if exported
        statistics = getattr(module, "input_statistics", None)   # grasp_ros.models.novelty, if exported
        self.input_statistics = dict(statistics) if statistics else None

    def encode(self, observation: Observation) -> torch.Tensor:
        return self.module.encode(observation)

    def encode_goal(self, observation: Observation) -> torch.Tensor:
        return (self.module.encode_goal if self._has_goal_encoder else self.module.encode)(observation)

    def predict(self, latent: torch.Tensor, action: torch.Tensor):
        return self.module.predict(latent, action)

    def position(self, latent: torch.Tensor):
        return self.module.position(latent) if self._has_position else None

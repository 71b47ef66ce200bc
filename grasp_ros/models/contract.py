"""The world-model contract: what a planner and the controller need from any model.

A world model is a ``torch.nn.Module`` with a few verbs::

    encode(observation) -> latent [B, D]
        observation: dict with "image" (uint8 [B, H, W, 3], RGB) and/or "joints" (float [B, J])
    encode_goal(observation) -> latent [B, D]          (optional; defaults to encode)
    predict(latent [..., D], action [..., A]) -> next latent [..., D]
        or a tuple (mean, log_variance) for a stochastic model; any leading batch dims
    position(latent [..., D]) -> [..., 2]              (optional; for paths and plots)
    decode_state(latent [..., D]) -> joints [..., J]   (optional; a joint head: joint goals)
    rollout(z0 [C, D], actions [C, H, A]) -> [C, H+1, D] (optional; a faster no-grad rollout)

and attributes ``latent_dim`` (D), ``action_dim`` (A), ``action_low`` / ``action_high`` ([A]),
``image_size`` (side of the square image it encodes, 0 if it takes none; with an optional
``image_frames`` K > 1 it encodes the last K frames, "image" uint8 [B, K, S, S, 3], oldest first) and ``joint_dim``
(length of the joint vector it encodes, 0 if it takes none). Optional: ``input_statistics``,
a dict of tensors describing its training inputs (``grasp_ros.models.novelty``).

``WorldModel`` below is a convenience base class; a model need not inherit from it as long as
it has these members (``check_world_model`` verifies that with a probe call).
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import nn

from .text import shorten

Observation = Dict[str, torch.Tensor]


class WorldModelError(ValueError):
    """A model or model spec that cannot be used, with the reason in the message."""


def error_text(exc: BaseException) -> str:
    """An exception's message, to be quoted in another: in full for a ``WorldModelError`` (ours,
    its user input already quoted briefly), shortened for anything else (a user's code, a
    library's message that may quote its input in full)."""
    return str(exc) if isinstance(exc, WorldModelError) else shorten(exc)


class WorldModel(nn.Module):
    """Base class with the contract's defaults. Subclasses set the attributes and verbs."""

    latent_dim: int
    action_dim: int
    image_size: int = 0
    joint_dim: int = 0

    def __init__(self, action_low, action_high):
        super().__init__()
        low = torch.as_tensor(action_low, dtype=torch.float32).reshape(-1)
        high = torch.as_tensor(action_high, dtype=torch.float32).reshape(-1)
        self.register_buffer("action_low", low)
        self.register_buffer("action_high", high)

    def encode(self, observation: Observation) -> torch.Tensor:
        raise NotImplementedError

    def encode_goal(self, observation: Observation) -> torch.Tensor:
        return self.encode(observation)

    def predict(self, latent: torch.Tensor, action: torch.Tensor):
        raise NotImplementedError

    def position(self, latent: torch.Tensor) -> Optional[torch.Tensor]:
        return None


def decodes_joints(model) -> bool:
    """Whether ``model`` has the optional joint head, ``decode_state``: what a goal given as joint
    positions alone, a joint-limit cost or an arrival judged from the latent needs."""
    return callable(getattr(model, "decode_state", None))


def split_prediction(output) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``predict``'s output as (mean, log_variance or None)."""
    if isinstance(output, (tuple, list)):
        if len(output) != 2:
            raise WorldModelError(f"predict returned a tuple of {len(output)}; expected (mean, log_variance)")
        return output[0], output[1]
    return output, None


def probe_observation(model, batch: int = 1, device=None) -> Observation:
    """A neutral observation of the shapes the model declares (for shape probes)."""
    obs: Observation = {}
    size, joints = int(getattr(model, "image_size", 0)), int(getattr(model, "joint_dim", 0))
    if size:
        frames = int(getattr(model, "image_frames", 1))
        shape = (batch, size, size, 3) if frames == 1 else (batch, frames, size, size, 3)
        obs["image"] = torch.full(shape, 128, dtype=torch.uint8, device=device)
    if joints:
        obs["joints"] = torch.zeros(batch, joints, device=device)
    return obs


def check_world_model(model, source: str = "model") -> None:
    """Raise ``WorldModelError`` naming the first way ``model`` breaks the contract."""
    for name in ("encode", "predict"):
        if not callable(getattr(model, name, None)):
            raise WorldModelError(f"{source}: has no {name}() method")
    for name in ("latent_dim", "action_dim", "action_low", "action_high"):
        if getattr(model, name, None) is None:
            raise WorldModelError(f"{source}: has no attribute {name!r}")
    D, A = int(model.latent_dim), int(model.action_dim)
    low, high = torch.as_tensor(model.action_low), torch.as_tensor(model.action_high)
    if low.shape != (A,) or high.shape != (A,):
        raise WorldModelError(f"{source}: action bounds have shapes {tuple(low.shape)}/{tuple(high.shape)}, expected ({A},)")
    if not bool((low <= high).all()) or not bool(torch.isfinite(low).all() & torch.isfinite(high).all()):
        raise WorldModelError(f"{source}: action bounds must be finite with low <= high, got {low.tolist()} / {high.tolist()}")
    obs = probe_observation(model, batch=2, device=low.device)
    if not obs:
        raise WorldModelError(f"{source}: declares neither image_size nor joint_dim, so nothing can be encoded")
    try:
        with torch.no_grad():
            z = model.encode(obs)
            mean, logvar = split_prediction(model.predict(z.unsqueeze(1).expand(2, 3, D),
                                                          torch.zeros(2, 3, A, device=low.device)))
    except Exception as exc:  # the probe is where a user's model first meets ours: say where it broke
        raise WorldModelError(f"{source}: probe call failed: {type(exc).__name__}: {shorten(exc)}") from exc
    if tuple(z.shape) != (2, D):
        raise WorldModelError(f"{source}: encode returned shape {tuple(z.shape)}, expected (2, {D})")
    if tuple(mean.shape) != (2, 3, D) or (logvar is not None and logvar.shape != mean.shape):
        raise WorldModelError(f"{source}: predict returned shape {tuple(mean.shape)} for latents [2, 3, {D}], expected (2, 3, {D})")

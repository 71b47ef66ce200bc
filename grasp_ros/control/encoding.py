"""An observation as a world model's batch of one, and its latent, both checked (ROS-free):
the one way the control loop hands an observation or a goal to a model."""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch


def model_batch(model, observation: Mapping[str, np.ndarray], device) -> dict[str, torch.Tensor]:
    """An observation ("image" uint8 and/or "joints") as the model's batch of one, checked
    against the inputs it declares (``image_size``, ``joint_dim``)."""
    image_size, joint_dim = int(getattr(model, "image_size", 0)), int(getattr(model, "joint_dim", 0))
    batch = {}
    for key, value in observation.items():
        declared = image_size if key == "image" else joint_dim if key == "joints" else 0
        if not declared:
            raise ValueError(f"the model does not take {key!r} observations "
                             f"(image_size={image_size}, joint_dim={joint_dim})")
        tensor = torch.as_tensor(np.ascontiguousarray(value), device=device)
        batch[key] = (tensor if key == "image" else tensor.to(torch.float32)).unsqueeze(0)
    return batch


def encode(model, batch: dict[str, torch.Tensor], goal: bool = False) -> torch.Tensor:
    """Latent [D] of one observation given as ``model_batch``: ``encode``, or ``encode_goal``
    for a goal; ValueError when the model returns the wrong size or NaN/Inf."""
    with torch.no_grad():
        z = (model.encode_goal if goal else model.encode)(batch)
    z = torch.as_tensor(z).reshape(-1)
    what = "encode_goal" if goal else "encode"
    if z.numel() != int(model.latent_dim):
        raise ValueError(f"model.{what} returned {z.numel()} values, expected {int(model.latent_dim)}")
    if not bool(torch.isfinite(z).all()):
        raise ValueError(f"model.{what} returned NaN/Inf")
    return z.to(torch.float32)

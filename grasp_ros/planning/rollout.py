"""Serial rollout through a world model and one model step (the cost lives in ``costs``)."""
from __future__ import annotations

from typing import Optional

import torch

from ..models.contract import split_prediction
from .costs import effort, task_cost  # noqa: F401 -- re-exported: the default cost


def model_step(model, latent: torch.Tensor, action: torch.Tensor, sample: bool = False,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Next latent [..., D]: the mean, or for a stochastic model with ``sample`` one realisation."""
    mean, log_variance = split_prediction(model.predict(latent, action))
    if not sample or log_variance is None:
        return mean
    noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return mean + torch.exp(0.5 * log_variance) * noise


def rollout(model, z0: torch.Tensor, actions: torch.Tensor, sample: bool = False,
            generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """States [C, H+1, D] from z0 [D] (or [C, D]) under actions [C, H, A], one step at a time.

    A model with its own ``rollout(z0 [C, D], actions)`` (an optional verb of the contract, e.g.
    compiled) does the no-grad mean rollouts itself."""
    C = actions.shape[0]
    z = z0.expand(C, -1) if z0.dim() == 1 else z0
    own = getattr(model, "rollout", None)
    if own is not None and not sample and not torch.is_grad_enabled():
        return own(z, actions)
    states = [z]
    for t in range(actions.shape[1]):
        z = model_step(model, z, actions[:, t], sample, generator)
        states.append(z)
    return torch.stack(states, dim=1)

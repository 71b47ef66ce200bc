"""The one dynamics function shared by the simulators and the analytic world model.

A point mass moves by ``max_step * action`` (action in [-1, 1]^2) and is then pushed out of
every wall it entered. The push is a smooth function of position (softplus depth, softmax over
the two axes), so the model is differentiable everywhere and its gradients say what a wall
does: a push into a wall has (almost) no effect, a push along it does. Large steps are split
into sub-steps of at most ``MAX_SUBSTEP`` so that no step can cross a wall.
"""
from __future__ import annotations

import functools
import math

import torch

from ..models.scripted import script

MAX_SUBSTEP = 0.1  # < half the thinnest inflated wall (0.13): no tunnelling
AGENT_RADIUS = 0.03
CONTACT_SHARPNESS = 200.0  # 1/m: contact acts within ~1/200 of a wall surface


class PointMassDynamics:
    """next_position = F(position, action), batched over any leading dimensions.

    Shapes: position [..., 2], action [..., 2] -> [..., 2]. Walls are inflated by the agent's
    radius so the agent's centre is what collides.
    """

    def __init__(self, walls, max_step: float, radius: float = AGENT_RADIUS,
                 sharpness: float = CONTACT_SHARPNESS):
        if max_step <= 0:
            raise ValueError(f"max_step must be > 0, got {max_step}")
        boxes = torch.tensor(walls, dtype=torch.float64).reshape(-1, 4)
        self._centre = (boxes[:, :2] + boxes[:, 2:]) / 2          # [W, 2]
        self._half = (boxes[:, 2:] - boxes[:, :2]) / 2 + radius   # [W, 2]
        self.max_step = float(max_step)
        self.substeps = max(1, math.ceil(self.max_step / MAX_SUBSTEP - 1e-9))
        self.sharpness = float(sharpness)
        self._cache: dict = {}

    def to(self, device=None, dtype=None) -> "PointMassDynamics":
        self._centre = self._centre.to(device=device, dtype=dtype)
        self._half = self._half.to(device=device, dtype=dtype)
        self._cache = {}
        return self

    def __call__(self, position: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        centre, half, substep, k = self._constants_like(position)
        return step(position, action, centre, half, substep, self.substeps, k, self.sharpness)

    def rollout(self, position: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Positions [C, H+1, 2] from position [C, 2] under actions [C, H, 2]: the same steps as
        calling this H times, to the bit, as one TorchScript loop (no Python between the steps;
        for rollouts without a gradient, where the time is in dispatching small ops)."""
        centre, half, substep, k = self._constants_like(position)
        return _scripted_rollout()(position, actions, centre, half, substep, self.substeps, k,
                                   self.sharpness)

    def _constants_like(self, p: torch.Tensor):
        """The walls, the sub-step and the sharpness as tensors of p's dtype and device, made once
        per dtype/device. The two numbers as 0-dim tensors, not Python floats: a float is cast to
        the tensor's dtype at every multiplication (and again in its backward pass), which was
        half the cost of each of the rollout's ~250 multiplications by one; the product is the
        same to the bit."""
        key = (p.dtype, p.device)
        if key not in self._cache:
            self._cache[key] = (self._centre.to(p.device, p.dtype), self._half.to(p.device, p.dtype),
                                torch.tensor(self.max_step / self.substeps, dtype=p.dtype, device=p.device),
                                torch.tensor(self.sharpness, dtype=p.dtype, device=p.device))
        return self._cache[key]


def push_out(p: torch.Tensor, centre: torch.Tensor, half: torch.Tensor, k: torch.Tensor,
             beta: float) -> torch.Tensor:
    """p [..., 2] pushed out of the (inflated) walls centre/half [W, 2] with sharpness k (a 0-dim
    tensor of p's dtype; ``beta``: the same as a number, for softplus)."""
    offset = p.unsqueeze(-2) - centre                  # [..., W, 2]
    q = offset.abs() - half                            # per-axis distance outside the box
    qx, qy = q[..., 0], q[..., 1]
    # smooth max(qx, qy) = logsumexp(k q) / k, written for two axes (< 0 inside the box)
    inside = qy + torch.nn.functional.softplus(qx - qy, beta=beta)
    depth = torch.nn.functional.softplus(-inside, beta=beta)    # ~penetration depth
    axis = torch.sigmoid(k * (q - q.flip(-1)))          # push along the nearest face
    push = (depth.unsqueeze(-1) * axis) * torch.tanh(k * offset)
    return p + push.sum(dim=-2)


def step(position: torch.Tensor, action: torch.Tensor, centre: torch.Tensor, half: torch.Tensor,
         substep: torch.Tensor, substeps: int, k: torch.Tensor, beta: float) -> torch.Tensor:
    """One step: ``substeps`` moves of ``substep * action`` (clamped to [-1, 1]), each pushed out
    (``substep`` and ``k``: 0-dim tensors of the position's dtype; ``beta`` = k as a number)."""
    delta = substep * action.clamp(-1.0, 1.0)
    for _ in range(substeps):
        position = push_out(position + delta, centre, half, k, beta)
    return position


def _serial_rollout(position: torch.Tensor, actions: torch.Tensor, centre: torch.Tensor,
                    half: torch.Tensor, substep: torch.Tensor, substeps: int, k: torch.Tensor,
                    beta: float) -> torch.Tensor:
    states = [position]
    for t in range(actions.shape[1]):
        position = step(position, actions[:, t], centre, half, substep, substeps, k, beta)
        states.append(position)
    return torch.stack(states, dim=1)


@functools.cache
def _scripted_rollout():
    return script(_serial_rollout)   # on first use: scripting takes a few tenths of a second

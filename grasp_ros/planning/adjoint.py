"""The gradient of a rollout's cost with respect to its actions, by the adjoint recurrence.

Backpropagation through a serial rollout walks H steps back through a recorded graph; for a
small model nearly all of that time is dispatching small ops. With s_{t+1} = F(s_t, a_t) and a
cost c(s_0..s_H, a), the same gradient is

    lambda_H = dc/ds_H,    lambda_t = dc/ds_t + F_s(t)^T lambda_{t+1},
    dc/da_t  = dc/da_t (direct) + F_a(t)^T lambda_{t+1},

with F_s(t), F_a(t) the Jacobians of the step at (s_t, a_t). It needs the rollout without a
gradient (where a model's own compiled ``rollout`` serves), the Jacobians of all C x H steps at
once (ONE batched backward with D cotangents) and H small matrix products. That work grows with
the latent size D, so it pays only where the latent is small (``ADJOINT_MAX_LATENT``).
"""
from __future__ import annotations

from typing import Callable

import torch

from .rollout import model_step, rollout

ADJOINT_MAX_LATENT = 8
"""Largest latent for which ``auto`` takes the adjoint (a 2-D latent: a sync about twice as
fast on a CPU; a 32-D one: several times slower than backpropagation)."""


def rollout_gradient(model, z0: torch.Tensor, actions: torch.Tensor,
                     cost: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
    """z0 [D] or [C, D], actions [C, H, A], cost(states [C, H+1, D], actions) -> [C]:
    (states [C, H+1, D], costs [C], d sum(costs) / d actions [C, H, A]), none of them part of
    a graph. The model's mean prediction (no sampled dynamics)."""
    C, H, _ = actions.shape
    actions = actions.detach()
    with torch.no_grad():
        states = rollout(model, z0, actions)
    with torch.enable_grad():
        s, a = states.clone().requires_grad_(True), actions.clone().requires_grad_(True)
        costs = cost(s, a)
        dc_ds, dc_da = torch.autograd.grad(costs.sum(), (s, a), allow_unused=True, materialize_grads=True)
        x, u = states[:, :-1].clone().requires_grad_(True), actions.clone().requires_grad_(True)
        predicted = model_step(model, x, u)                                     # [C, H, D]
        D = predicted.shape[-1]
        basis = torch.eye(D, dtype=predicted.dtype, device=predicted.device).view(D, 1, 1, D)
        f_s, f_a = torch.autograd.grad(predicted, (x, u), basis.expand(D, C, H, D),
                                       is_grads_batched=True, allow_unused=True, materialize_grads=True)
    # f_s [D_out, C, H, D_in], f_a [D_out, C, H, A] -> per step [C, D_out, .]
    f_s, f_a = f_s.permute(1, 2, 0, 3), f_a.permute(1, 2, 0, 3)
    lam = dc_ds[:, H]
    adjoints = [lam]                                                            # lambda_H .. lambda_1
    for t in range(H - 1, 0, -1):
        lam = torch.baddbmm(dc_ds[:, t, None], lam[:, None], f_s[:, t]).squeeze(1)
        adjoints.append(lam)
    adjoints = torch.stack(adjoints[::-1], dim=1)                               # [C, H, D]
    grad = dc_da + torch.einsum("chd,chda->cha", adjoints, f_a)
    return states, costs.detach(), grad

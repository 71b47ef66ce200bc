"""L-BFGS for a planner's small searches (one latent vector, a few dozen steps).

The two-loop recursion over the last ``history`` curvature pairs (Nocedal & Wright, Numerical
Optimization, 2nd ed., Algorithm 7.4), a first step of -g scaled by min(1, 1 / |g|_1) (no
curvature is known yet), and a backtracking line search on the Armijo condition (their
Algorithm 3.1). ``torch.optim.LBFGS`` would do, but constructing any ``torch.optim`` optimiser
imports ``torch._dynamo`` (2.4 s of a controller's start-up on a 2-core CPU, for a search that
takes milliseconds).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

ARMIJO = 1e-4
"""Sufficient decrease: a step must lower f by this fraction of what the slope promised."""
BACKTRACK = 0.5
"""Factor on the step length per rejected trial."""
MAX_TRIALS = 20
"""Trial step lengths of one line search (the last is 0.5^19 of the first)."""


def minimise(f: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, steps: int,
             history: int = 10, tolerance: float = 1e-7, reduction: float = 0.0) -> torch.Tensor:
    """A local minimiser of the scalar ``f`` near ``x0`` (a vector): ``steps`` L-BFGS steps at
    most, fewer once the gradient's largest entry is below ``tolerance``, once f has fallen to
    ``reduction`` times f(x0) (for f >= 0, such as a squared distance; 0: never), or once no
    step lowers f. Returns the last accepted point (``x0`` itself if none was), detached."""
    point, value = _evaluate(f, x0.clone())
    x, grad, value = point.detach(), _gradient(point, value), value.detach()
    if not (torch.isfinite(value) and torch.isfinite(grad).all()):
        return x
    good_enough = reduction * float(value)
    pairs: list[tuple[torch.Tensor, torch.Tensor, float]] = []      # (s, y, 1 / y.s)
    for _ in range(steps):
        if float(grad.abs().max()) <= tolerance or float(value) < good_enough:
            break
        direction = _direction(grad, pairs)
        slope = float(grad @ direction)
        if not slope < 0:            # not a descent direction: start the curvature afresh
            pairs.clear()
            direction, slope = -grad, -float(grad @ grad)
        length = 1.0 if pairs else min(1.0, 1.0 / float(grad.abs().sum()))
        for _ in range(MAX_TRIALS):
            trial = x + length * direction
            point, trial_value = _evaluate(f, trial)
            # the gradient only for a trial that lowers f enough: a rejected one needs no backward
            lowered = float(trial_value.detach())
            if math.isfinite(lowered) and lowered <= float(value) + ARMIJO * length * slope:
                trial_grad = _gradient(point, trial_value)
                if bool(torch.isfinite(trial_grad).all()):
                    break
            length *= BACKTRACK
        else:
            break                    # no trial lowered f enough: x is as good as this search gets
        s, y = trial - x, trial_grad - grad
        curvature = float(y @ s)
        if curvature > 1e-10:        # keeps the inverse Hessian estimate positive definite
            pairs.append((s, y, 1.0 / curvature))
            del pairs[:-history]
        x, value, grad = trial, trial_value.detach(), trial_grad
    return x


def _evaluate(f, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x as a leaf that requires grad, f(x) with its graph)."""
    with torch.enable_grad():
        point = x.detach().requires_grad_(True)
        return point, f(point)


def _gradient(point: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    (grad,) = torch.autograd.grad(value, point)
    return grad


def _direction(grad: torch.Tensor, pairs) -> torch.Tensor:
    """-H grad, H the inverse Hessian estimate of the curvature pairs (the two-loop recursion)."""
    q = grad.clone()
    alphas = []
    for s, y, rho in reversed(pairs):
        alpha = rho * float(s @ q)
        q.sub_(y, alpha=alpha)
        alphas.append(alpha)
    if pairs:
        s, y, _ = pairs[-1]
        q.mul_(float(s @ y) / float(y @ y))         # the initial estimate's scale, (s.y) / (y.y)
    for (s, y, rho), alpha in zip(pairs, reversed(alphas)):
        beta = rho * float(y @ q)
        q.add_(s, alpha=alpha - beta)
    return q.neg_()

"""GD: shooting gradient descent, Adam on the actions through the full serial rollout.

C chains of action sequences [C, H, A] are optimised as one batch. Each iteration rolls every
chain out serially from z0 (C * H one-step predictions), backpropagates the task cost through
all H model steps to the actions, takes one Adam step and clamps the actions to the bounds.
Chain 0 starts from the warm start's actions (else zeros); chains 1..C-1 start fresh from small
random actions. Every rollout made for a gradient is also offered as a candidate plan (the
actions before that step), and the final iterate is rolled out once more at the end.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .adam import Adam
from .base import GRADIENT_STEP_COST, Deadline, Plan, Planner, PlannerSettings, WarmStart


@dataclass
class GdSettings(PlannerSettings):
    iterations: int = 100
    """Iteration cap when the budget names none."""
    lr: float = 0.1
    """Adam learning rate of the actions."""
    chains: int = 1
    """C: independent action sequences optimised in parallel as one batch."""
    init_std: float = 0.1
    """Std of the extra chains' initial actions, as a fraction of half the action range."""
    grad_clip: float = 0.0
    """Clip each chain's gradient norm to this before the Adam step (0 disables)."""

    def validate(self) -> None:
        super().validate()
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.chains < 1:
            raise ValueError(f"chains must be >= 1, got {self.chains}")
        if self.init_std < 0 or self.grad_clip < 0:
            raise ValueError("init_std and grad_clip must be >= 0")


class GdPlanner(Planner):
    name = "gd"
    Settings = GdSettings

    def _largest_batched_call(self, settings: GdSettings) -> tuple[int, str]:
        return (settings.chains * self.horizon * GRADIENT_STEP_COST,
                f"backpropagation through {settings.chains} chains x horizon {self.horizon}")

    def _solve(self, z0, goal, warm: Optional[WarmStart], deadline: Deadline) -> Plan:
        cfg: GdSettings = self.settings
        H, C = self.horizon, cfg.chains
        actions = self._initial_actions(warm).requires_grad_(True)            # [C, H, A]
        optimiser = Adam([(actions, cfg.lr)])
        best, calls, it = self._best(deadline), 0, 0
        while not deadline.done(it) and not self._converged(best):
            states = self._rollout(z0, actions)                                # [C, H+1, D]
            cost = self._cost(states, goal, actions)                           # [C]
            best.offer(actions, states, cost)
            optimiser.zero_grad()
            cost.sum().backward()                 # chains are independent: each gets its own gradient
            actions.grad.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)         # keep Adam's moments finite
            if cfg.grad_clip > 0:
                norms = actions.grad.flatten(1).norm(dim=1).clamp_min(1e-12)
                actions.grad.mul_((cfg.grad_clip / norms).clamp(max=1.0).view(C, 1, 1))
            optimiser.step()
            with torch.no_grad():
                actions.copy_(self._clamp(actions))
            calls += C * H
            it += 1
        with torch.no_grad():
            states = self._rollout(z0, actions)
            best.offer(actions, states, self._cost(states, goal, actions))
        return self._finish(best, z0, goal, it, calls + C * H)

    def _initial_actions(self, warm: Optional[WarmStart]) -> torch.Tensor:
        cfg, H, A = self.settings, self.horizon, self.action_dim
        actions = torch.zeros(cfg.chains, H, A, device=self.device)
        if cfg.chains > 1:
            scale = cfg.init_std * (self.high - self.low) / 2
            actions[1:] = scale * torch.randn(cfg.chains - 1, H, A, generator=self.generator,
                                              device=self.device)
        if warm is not None:
            actions[0] = warm.actions
        return self._clamp(actions)

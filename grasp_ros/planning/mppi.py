"""MPPI: model predictive path integral control (Williams et al., information-theoretic MPC).

A nominal action sequence u [H, A] is perturbed by K Gaussian noise sequences, each sample is
clamped to the action bounds (sample 0 is u itself), and all K are rolled out serially through
the model (one batched call per step: K * H one-step predictions). With the rollout costs
S_k, the nominal moves to the cost-weighted average of the samples:

    w = softmax(-(S - min S) / lambda),      u <- u + sum_k w_k eps_k,

where eps_k = clamp(u + noise_k) - u is the noise as applied, so u stays inside the bounds.
A plan call may run several such iterations. u starts from the warm start's actions (the
shifted previous nominal) or zeros; the returned plan is the cheapest rollout seen, samples and
the final nominal included.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from .base import Deadline, Plan, Planner, PlannerSettings, WarmStart
from .noise import coloured_noise


@dataclass
class MppiSettings(PlannerSettings):
    iterations: int = 10
    """Iteration cap when the budget names none."""
    samples: int = 300
    """K: noisy sequences rolled out (as one batch) per iteration, the nominal included."""
    temperature: float = 0.1
    """lambda: lower follows the cheapest samples more greedily, higher averages more."""
    noise_std: float = 0.5
    """Std of the action noise, as a fraction of half the action range (high - low) / 2."""
    noise_colour: float = 0.0
    """Colour of that noise over time, power ~ 1/f^noise_colour (0: white, plain MPPI; 2: red;
    ``grasp_ros.planning.noise``)."""

    def validate(self) -> None:
        super().validate()
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.noise_std < 0 or self.noise_colour < 0:
            raise ValueError(f"noise_std and noise_colour must be >= 0, got {self.noise_std}, {self.noise_colour}")


class MppiPlanner(Planner):
    name = "mppi"
    Settings = MppiSettings

    def _largest_batched_call(self, settings: MppiSettings) -> tuple[int, str]:
        return settings.samples * self.horizon, f"{settings.samples} samples x horizon {self.horizon}"

    def _solve(self, z0, goal, warm: Optional[WarmStart], deadline: Deadline) -> Plan:
        cfg: MppiSettings = self.settings
        H, A, K = self.horizon, self.action_dim, cfg.samples
        std = cfg.noise_std * (self.high - self.low) / 2                       # [A]
        nominal = self._clamp(warm.actions if warm is not None else torch.zeros(H, A, device=self.device))
        inf = torch.tensor(math.inf, device=self.device)
        best, calls, it = self._best(deadline), 0, 0
        with torch.no_grad():
            while not deadline.done(it) and not self._converged(best):
                noise = coloured_noise((K, H, A), cfg.noise_colour, self.generator, self.device)
                noise[0] = 0.0                                                 # sample 0 = nominal
                samples = self._clamp(nominal + std * noise)                   # [K, H, A]
                states = self._rollout(z0, samples)                            # [K, H+1, D]
                cost = self._cost(states, goal, samples)                       # [K]
                best.offer(samples, states, cost)
                cost = torch.where(torch.isfinite(cost), cost, inf)
                weights = torch.softmax(-(cost - cost.min()) / cfg.temperature, dim=0)
                weights = torch.nan_to_num(weights, nan=0.0)                   # all NaN: stay put
                nominal = nominal + (weights.view(K, 1, 1) * (samples - nominal)).sum(0)
                calls += K * H
                it += 1
            final = nominal.unsqueeze(0)                                       # [1, H, A]
            states = self._rollout(z0, final)
            best.offer(final, states, self._cost(states, goal, final))
        return self._finish(best, z0, goal, it, calls + H)

"""CEM: the cross-entropy method over open-loop action sequences (random shooting + refit).

A diagonal Gaussian N(mu, diag(sigma^2)) over action sequences [H, A] is refined for a few
iterations. Each iteration draws K sequences [K, H, A] (clamped to the action bounds; sample 0
is the mean itself), rolls all K out serially through the model (one batched call per step,
so K * H one-step predictions), and refits mu and sigma to the E cheapest ("elites"). One
iteration alone is random shooting. mu starts from the warm start's actions (else zeros), so a
shifted previous plan seeds the next control cycle; the returned plan is the cheapest rollout
seen, the final mean included.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from .base import Deadline, Plan, Planner, PlannerSettings, WarmStart
from .noise import coloured_noise


@dataclass
class CemSettings(PlannerSettings):
    iterations: int = 10
    """Iteration cap when the budget names none."""
    samples: int = 300
    """K: action sequences drawn (and rolled out as one batch) per iteration."""
    elites: int = 30
    """E: the cheapest sequences that mu and sigma are refitted to."""
    init_std: float = 0.5
    """Initial sigma, as a fraction of half the action range (high - low) / 2."""
    min_std: float = 0.05
    """Floor of sigma after each refit, as a fraction of half the action range."""
    smoothing: float = 0.0
    """alpha: mu, sigma <- alpha * old + (1 - alpha) * elite statistics (0 = plain refit)."""
    keep_elites: bool = False
    """Carry the E elites into the next iteration's K samples (re-evaluated there)."""
    noise_colour: float = 0.0
    """Colour of the sampling noise over time, power ~ 1/f^noise_colour (0: white, plain CEM;
    2: red, as iCEM's; ``grasp_ros.planning.noise``)."""

    def validate(self) -> None:
        super().validate()
        if self.samples < 1 or not 1 <= self.elites <= self.samples:
            raise ValueError(f"need samples >= 1 and 1 <= elites <= samples, got "
                             f"samples={self.samples}, elites={self.elites}")
        if self.keep_elites and self.elites >= self.samples:
            raise ValueError("keep_elites needs elites < samples (room for new samples)")
        if self.init_std < 0 or self.min_std < 0:
            raise ValueError("init_std and min_std must be >= 0")
        if self.noise_colour < 0:
            raise ValueError(f"noise_colour must be >= 0, got {self.noise_colour}")
        if not 0 <= self.smoothing < 1:
            raise ValueError(f"smoothing must be in [0, 1), got {self.smoothing}")


class CemPlanner(Planner):
    name = "cem"
    Settings = CemSettings

    def _largest_batched_call(self, settings: CemSettings) -> tuple[int, str]:
        return settings.samples * self.horizon, f"{settings.samples} samples x horizon {self.horizon}"

    def _solve(self, z0, goal, warm: Optional[WarmStart], deadline: Deadline) -> Plan:
        cfg: CemSettings = self.settings
        H, A, K, E = self.horizon, self.action_dim, cfg.samples, cfg.elites
        half = (self.high - self.low) / 2                                      # [A]
        mean = self._clamp(warm.actions if warm is not None else torch.zeros(H, A, device=self.device))
        std = (cfg.init_std * half).expand(H, A).clone()
        floor = cfg.min_std * half
        n_keep = E if cfg.keep_elites else 0
        kept = mean.new_zeros(0, H, A)                          # elites carried over: [0 or E, H, A]
        inf = torch.tensor(math.inf, device=self.device)
        best, calls, it = self._best(deadline), 0, 0
        with torch.no_grad():
            while not deadline.done(it) and not self._converged(best):
                noise = coloured_noise((K - kept.shape[0], H, A), cfg.noise_colour, self.generator, self.device)
                noise[0] = 0.0                                                 # sample 0 = the mean
                candidates = torch.cat([self._clamp(mean + std * noise), kept])  # [K, H, A]
                states = self._rollout(z0, candidates)                         # [K, H+1, D]
                cost = self._cost(states, goal, candidates)                    # [K]
                best.offer(candidates, states, cost)
                cost = torch.where(torch.isfinite(cost), cost, inf)            # NaN never elite
                elites = candidates[torch.topk(cost, E, largest=False).indices]  # [E, H, A]
                mean = cfg.smoothing * mean + (1 - cfg.smoothing) * elites.mean(0)
                std = cfg.smoothing * std + (1 - cfg.smoothing) * elites.std(0, unbiased=False)
                std = torch.maximum(std, floor)
                kept = elites[:n_keep]
                calls += K * H
                it += 1
            final = self._clamp(mean).unsqueeze(0)                             # the mean, [1, H, A]
            states = self._rollout(z0, final)
            best.offer(final, states, self._cost(states, goal, final))
        return self._finish(best, z0, goal, it, calls + H)

"""The outside reference: MPPI from the ``pytorch-mppi`` package on the same dynamics and cost."""
from __future__ import annotations

import torch

from ..planning.base import Deadline, Plan
from ..planning.rollout import rollout


class PeerMppi:
    """Adapter giving pytorch_mppi.MPPI our ``plan(z0, goal) -> Plan`` shape (open loop only)."""

    name = "pytorch_mppi"
    observer = None
    """As ``Planner.observer``; it sees the nominal after every iteration, the plan this
    adapter would return if stopped there (it returns the last nominal, not a best-so-far)."""

    def __init__(self, model, horizon: int, iterations: int, samples: int, lambda_: float,
                 noise_sigma: float, tolerance: float = 0.0, seed: int = 0):
        self.model, self.horizon, self.iterations, self.samples = model, horizon, iterations, samples
        self.lambda_, self.noise_sigma, self.tolerance, self.seed = lambda_, noise_sigma, tolerance, seed

    def reset(self, seed: int | None = None) -> None:
        self.seed = self.seed if seed is None else int(seed)

    def plan(self, z0: torch.Tensor, goal: torch.Tensor, **_) -> Plan:
        from pytorch_mppi import MPPI   # optional dependency, only for the benchmark
        torch.manual_seed(self.seed)     # pytorch_mppi samples from the global generator
        model, A = self.model, int(self.model.action_dim)
        clock = Deadline(None, self.iterations)   # only its clock, paused for the observer
        mppi = MPPI(
            lambda s, a: model.predict(s, a),
            lambda s, a: torch.zeros(s.shape[0]),
            nx=int(model.latent_dim),
            noise_sigma=torch.eye(A) * self.noise_sigma ** 2,
            num_samples=self.samples, horizon=self.horizon, lambda_=self.lambda_,
            u_min=model.action_low.float(), u_max=model.action_high.float(),
            terminal_state_cost=lambda s, a: (s[..., -1, :] - goal).pow(2).sum(-1).squeeze(0),
        )
        iterations = 0
        with torch.no_grad():
            for iterations in range(1, self.iterations + 1):
                mppi.command(z0, shift_nominal_trajectory=False)
                states = rollout(model, z0, mppi.U.unsqueeze(0))[0]
                cost = float((states[-1] - goal).pow(2).sum())
                if self.observer is not None:
                    seconds = clock.elapsed()
                    with clock.paused():
                        self.observer(mppi.U, seconds)
                if cost <= self.tolerance:
                    break
        return Plan(actions=mppi.U.clone(), states=states, cost=cost, iterations=iterations,
                    solve_time=clock.elapsed(),
                    model_calls=iterations * (self.samples + 1) * self.horizon, planner=self.name)

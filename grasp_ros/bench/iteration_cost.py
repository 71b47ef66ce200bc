"""Cost of one GRASP iteration: all H one-step predictions in one batched call, against the same
loss computed with a Python loop over t (H model calls), measured in the same run."""
from __future__ import annotations

import time

import torch
from torch import nn

from ..planning.grasp import GraspSettings, grasp_loss_terms
from ..planning.rollout import model_step


def per_step_loss_terms(model, states, actions, goal):
    """The same two loss terms as ``grasp_loss_terms``, one model call per time step."""
    dynamics, to_goal = [], []
    for t in range(actions.shape[1]):
        predicted = model_step(model, states[:, t].detach(), actions[:, t])
        dynamics.append((predicted - states[:, t + 1]).pow(2).sum(-1))
        to_goal.append((predicted - goal).pow(2).sum(-1))
    return torch.stack(dynamics, 1), torch.stack(to_goal, 1)


class MlpDynamics(nn.Module):
    """A learned-model stand-in of typical size (D=64, A=2, two 256-unit layers)."""

    latent_dim, action_dim = 64, 2

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(66, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                                 nn.Linear(256, 64))

    def predict(self, z, a):
        return z + self.net(torch.cat([z, a], -1))


def _time(fn, repeats: int, device: torch.device) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):
        fn()
    samples = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        samples.append(time.perf_counter() - start)
    return sorted(samples)[len(samples) // 2]


def measure(model, model_name: str, horizon: int = 50, chains: int = GraspSettings.chains,
            repeats: int = 50, seed: int = 0) -> dict:
    """One BENCH_FORMAT "iteration_cost" row: forward + backward of the GRASP loss, both ways."""
    g = torch.Generator().manual_seed(seed)
    D, A = int(model.latent_dim), int(model.action_dim)
    device = next(iter(model.buffers()), next(iter(model.parameters()), torch.empty(0))).device
    states = torch.randn(chains, horizon + 1, D, generator=g).to(device).requires_grad_(True)
    actions = torch.rand(chains, horizon, A, generator=g).mul(2).sub(1).to(device).requires_grad_(True)
    goal = torch.randn(D, generator=g).to(device)

    def step(loss_fn):
        def run():
            dynamics, to_goal = loss_fn(model, states, actions, goal)
            (dynamics.sum() + 0.01 * to_goal.sum()).backward()
            states.grad = actions.grad = None
        return run

    batched = _time(step(grasp_loss_terms), repeats, device)
    looped = _time(step(per_step_loss_terms), repeats, device)
    return {"bench": "iteration_cost", "horizon": horizon, "chains": chains, "model": model_name,
            "device": device.type, "batched_s": batched, "per_step_loop_s": looped,
            "ratio": batched / looped}


def measure_all(analytic_model) -> list[dict]:
    """The analytic model and an MLP on the CPU, and the MLP on CUDA when there is one."""
    rows = [measure(analytic_model, "analytic"), measure(MlpDynamics(), "mlp")]
    if torch.cuda.is_available():
        rows.append(measure(MlpDynamics().cuda(), "mlp"))
    return rows

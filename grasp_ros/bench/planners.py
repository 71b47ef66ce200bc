"""Run one benchmark cell (env x horizon x planner): seeded episodes planned open loop with the
analytic model, then executed in the simulator, which alone judges success.

Time to success (the GRASP paper's metric): the planner's own seconds until its best plan so far
first succeeds when executed. Each new best is executed in a second simulator as it comes,
outside the planner's clock.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from ..sim import make_env
from ..models import load_world_model
from ..planning import make_planner
from .peer_mppi import PeerMppi
from .settings import PLANNER_SETTINGS, early_exit_tolerance


@dataclass(frozen=True)
class Cell:
    env: str
    horizon: int
    planner: str
    episodes: int
    first_seed: int = 0
    device: str = "cpu"
    model: str = "analytic"
    """analytic (latent = position) or learned (latent from the camera image)."""
    options: tuple = ()
    """(name, value) pairs over the planner's benchmark settings (``grasp-ros bench --set``)."""


def build_planner(cell: Cell, model, tolerance: float):
    options = dict(PLANNER_SETTINGS[cell.planner], **dict(cell.options))
    if cell.planner == "pytorch_mppi":
        return PeerMppi(model, cell.horizon, tolerance=tolerance, **options)
    options["tolerance"] = tolerance
    return make_planner(cell.planner, model, cell.horizon, options, device=cell.device)


def planner_settings(planner) -> dict:
    if hasattr(planner, "settings"):
        return dataclasses.asdict(planner.settings)
    return {k: getattr(planner, k) for k in ("iterations", "samples", "lambda_", "noise_sigma", "tolerance")}


def load_model(name: str, env: str, horizon: int, device: str):
    return load_world_model({"name": name, "env": env, "horizon": horizon}, device=device)


def encode_task(env, episode, model, device: str):
    """Start and goal latents: positions for a model of joints, camera images otherwise."""
    if getattr(model, "joint_dim", 0):
        to = dict(dtype=torch.float32, device=device)
        return torch.tensor(episode.start, **to), torch.tensor(episode.goal, **to)
    with torch.no_grad():
        image = lambda p: torch.from_numpy(env.render(p)).unsqueeze(0).to(device)  # noqa: E731
        return (model.encode({"image": image(episode.start)})[0],
                model.encode_goal({"image": image(episode.goal)})[0])


def run_episode(env, planner, model, seed: int, device: str):
    """Plan from the episode's start to its goal, execute; returns (success, plan, executed path)."""
    episode = env.sample_episode(seed)
    env.reset(episode)
    planner.reset(seed)
    plan = planner.plan(*encode_task(env, episode, model, device))
    path = env.execute(plan.actions.detach().cpu().numpy())
    return env.success(path[-1]), plan, path


class FirstSuccess:
    """Planner observer: the planner's seconds at the first reported plan that succeeds when
    executed from the episode's start, in an env of its own (the episode's env is left alone)."""

    def __init__(self, env):
        self.env, self.episode, self.seconds = env, None, None

    def start(self, episode) -> None:
        self.episode, self.seconds = episode, None

    def __call__(self, actions: torch.Tensor, seconds: float) -> None:
        if self.seconds is not None:
            return   # only the first success counts; later plans cost nothing more
        self.env.reset(self.episode)
        path = self.env.execute(actions.detach().cpu().numpy())
        if self.env.success(path[-1]):
            self.seconds = seconds


def run_cell(cell: Cell, progress=None) -> dict:
    """Per-episode records of one cell (or a chunk of one: ``first_seed`` .. + ``episodes``)."""
    torch.set_num_threads(1)  # cells run side by side in worker processes; 1 thread each is fair
    env = make_env(cell.env, cell.horizon)
    model = load_model(cell.model, cell.env, cell.horizon, cell.device)
    # The early exit compares latent distances: with a learned latent it is off (runs to the cap).
    tolerance = early_exit_tolerance(env.success_radius) if cell.model == "analytic" else 0.0
    planner = build_planner(cell, model, tolerance)
    planner.observer = first_success = FirstSuccess(make_env(cell.env, cell.horizon))
    records = []
    for i in range(cell.episodes):
        first_success.start(env.sample_episode(cell.first_seed + i))
        ok, plan, path = run_episode(env, planner, model, cell.first_seed + i, cell.device)
        # Only episodes that succeed have one: with a learned model a plan can succeed on the
        # way and a later one, cheaper in the model, fail; then the episode failed.
        records.append({"success": ok, "solve_s": plan.solve_time, "calls": plan.model_calls,
                        "iterations": plan.iterations, "final_error": env.distance_to_goal(path[-1]),
                        "time_to_success_s": first_success.seconds if ok else None})
        if progress is not None:
            progress()
    return {"cell": cell, "records": records, "settings": planner_settings(planner)}


def summarise(cell: Cell, records: list[dict], settings: dict) -> dict:
    """One benchmark row (docs/benchmarks/FORMAT.md "planners") from a cell's episode records."""
    col = lambda key: [r[key] for r in records]  # noqa: E731
    to_success = [r["time_to_success_s"] for r in records if r["time_to_success_s"] is not None]
    return {
        "bench": "planners", "env": cell.env, "horizon": cell.horizon, "planner": cell.planner,
        "model": cell.model, "episodes": len(records),
        "success_rate": float(np.mean(col("success"))),
        "median_solve_s": float(np.median(col("solve_s"))),
        "median_model_calls": int(np.median(col("calls"))),
        "median_iterations": float(np.median(col("iterations"))),
        "median_final_error": float(np.median(col("final_error"))),
        "median_time_to_success_s": float(np.median(to_success)) if to_success else None,
        "time_to_success_episodes": len(to_success),
        "device": cell.device,
        "settings": settings,
    }


def example_plans(env_name: str, horizon: int, seeds, device: str = "cpu") -> list[dict]:
    """GRASP plans for a figure: virtual states, the model's rollout and the executed path."""
    env = make_env(env_name, horizon)
    model = load_model("analytic", env_name, horizon, device)
    planner = make_planner("grasp", model, horizon, device=device)
    examples = []
    for seed in seeds:
        ok, plan, path = run_episode(env, planner, model, seed, device)
        examples.append({"seed": seed, "success": ok, "start": path[0], "goal": env.goal.copy(),
                         "virtual_states": plan.virtual_states.cpu().numpy(), "path": path})
    return examples


__all__ = ["Cell", "FirstSuccess", "encode_task", "example_plans", "load_model", "run_cell", "run_episode", "summarise"]

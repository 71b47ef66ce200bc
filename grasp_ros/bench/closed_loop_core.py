"""Closed loop through the ROS-free control core: simulator -> ControlLoop -> simulator.

The same cycle the node runs, without DDS, on a simulated clock: one env step per control
period. Used to choose the controller's planner settings and as a closed-loop benchmark row
with ``"through": "core"``. A model of joints (the analytic one) observes the joints; an image
model (the learned one) the camera image, with the goal given as the image of the agent at the
goal (as the sim node publishes it).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..control import ControlConfig, Status
from ..control.build import build_control_loop
from ..sim import make_env


def observation(loop, env, position) -> dict:
    """What the controller sees of the agent at ``position``: the joints where its model encodes
    joints (as the bench's ``encode_task`` decides), else the camera image."""
    if loop.joint_dim:
        return {"joints": np.asarray(position, dtype=np.float32)}
    return {"image": env.render(position)}


def run_episode(loop, env, seed: int, max_steps: int) -> dict:
    """Drive one episode; success once the agent is within the success radius of the goal."""
    episode = env.sample_episode(seed)
    env.reset(episode)
    loop.reset()
    loop.set_goal(observation(loop, env, episode.goal))
    statuses, solve = [], []
    for k in range(max_steps):
        now = k * loop.config.period
        loop.observe(observation(loop, env, env.position), now)
        result = loop.step(now)
        statuses.append(result.status)
        solve.append(result.solve_time)
        env.step(result.command)
        if env.success():
            return {"success": True, "steps": k + 1, "statuses": statuses, "solve_s": solve}
    return {"success": False, "steps": max_steps, "statuses": statuses, "solve_s": solve}


def run(env_name: str, planner: str, horizon: int, rate_hz: float, episodes: int,
        settings: dict | None = None, first_seed: int = 0, solve_budget: float = 0.0,
        model: str = "analytic", max_steps: int | None = None,
        progress: Callable[[dict], None] | None = None) -> dict:
    """A BENCH_FORMAT "closed_loop" row through the control core (``model`` analytic or learned).

    ``solve_budget`` is wall-clock seconds per cycle (0: 0.8 x period). A budget that never binds
    plus an iteration cap in ``settings`` makes the run deterministic, whatever the machine load.
    An episode fails after ``max_steps`` control periods (default 3 x horizon); ``progress`` is
    called with each episode's result.
    """
    env = make_env(env_name, horizon)
    config = ControlConfig(period=1.0 / rate_hz, solve_budget=solve_budget)
    spec = {"name": model, "options": {"env": env_name, "horizon": horizon}}
    loop = build_control_loop(spec, planner, horizon, config, settings)
    results = []
    for i in range(episodes):
        results.append(run_episode(loop, env, first_seed + i, max_steps or 3 * horizon))
        if progress is not None:
            progress(results[-1])
    statuses = [s for r in results for s in r["statuses"]]
    return {"bench": "closed_loop", "env": env_name, "model": model, "planner": planner,
            "rate_hz": rate_hz, "horizon": horizon, "episodes": episodes,
            "success_rate": float(np.mean([r["success"] for r in results])),
            "median_steps": float(np.median([r["steps"] for r in results])),
            "fallback_rate": statuses.count(Status.FALLBACK) / len(statuses),
            "median_solve_s": float(np.median([s for r in results for s in r["solve_s"]])),
            "through": "core", "settings": settings or {}, "first_seed": first_seed,
            "max_episode_steps": max_steps or 3 * horizon,
            "successes": [bool(r["success"]) for r in results]}

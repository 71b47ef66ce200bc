"""Closed loop through the ROS-free control core: simulator -> ControlLoop -> simulator.

The same cycle the node runs, without DDS, on a simulated clock: one world step per control
period. Used to choose the controller's planner settings and as a closed-loop benchmark row
with ``"through": "core"``. Any world of the sim node runs (``sim.world``): a point-mass layout,
or the MuJoCo arm with its shipped camera + joints model. The controller sees what its model
card asks for, as the node would hand it over: the camera frame made the model's square, and/or
the joints in the card's layout; the goal is the same observation of the robot at rest at the
goal (as the sim node publishes it).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from sensor_msgs.msg import JointState

from ..control import ControlConfig, Status
from ..control.build import build_control_loop
from ..models.preprocess import prepare_image
from ..ros.conversions import joint_values
from ..sim.world import ARM, World, make_world


def make_core_world(env_name: str, horizon: int, period: float) -> World:
    """The world of ``env_name`` as the sim node makes it by default (success radius, camera),
    so that a core row and a row through ROS count the same successes."""
    from ..sim.node import SimSettings
    defaults = SimSettings()
    return make_world(env_name, period, horizon, defaults.success_radius, defaults.image_size)


def model_spec_for(env_name: str, model: str, horizon: int) -> dict:
    """The controller's model spec: the arm's shipped checkpoint for a learned arm model."""
    options = {"env": env_name, "horizon": horizon}
    if env_name == ARM:
        if model != "learned":
            raise ValueError(f"the arm has only a learned model, not {model!r}")
        from ..sim.closed_loop import ARM_CHECKPOINT
        options["checkpoint"] = str(ARM_CHECKPOINT)
    return {"name": model, "options": options}


def observation(loop, world: World, position, velocity) -> dict:
    """What the controller sees of the robot at ``position`` moving at ``velocity``: the inputs
    its model card names (camera frame as the model's square; joints in the card's layout)."""
    card, seen = loop.card, {}
    if card.image is not None:
        seen["image"] = prepare_image(world.render_at(position), card.image.size, card.image.crop)
    if card.joints is not None:   # the sim node's joint_states, read as the node reads them
        state = JointState(name=list(world.joint_names), position=np.asarray(position, float).tolist(),
                           velocity=np.asarray(velocity, float).tolist())
        seen["joints"] = joint_values(state, card.joints.names, card.joints.fields, world.name)
    return seen


def run_episode(loop, world: World, seed: int, max_steps: int, command_delay: int = 0) -> dict:
    """Drive one episode; success once the world says the goal is reached. ``command_delay`` 1:
    each command acts one step late (the previous one holds over the step it was planned for),
    as through ROS in real time, where a cycle's command reaches the sim after its step began."""
    _, goal = world.reset(seed)
    loop.reset()
    loop.set_goal(observation(loop, world, goal, np.zeros_like(goal)))
    statuses, solve = [], []
    queued = [np.zeros_like(goal)] * command_delay     # the robot starts at rest
    for k in range(max_steps):
        now = k * loop.config.period
        seen = observation(loop, world, world.position, world.velocity)
        if "image" in seen and "joints" in seen:   # the node's two topics, paired by stamp
            loop.observe({"joints": seen.pop("joints")}, now)
        loop.observe(seen, now)
        result = loop.step(now)
        statuses.append(result.status)
        solve.append(result.solve_time)
        queued.append(result.command)
        world.step(queued.pop(0))
        if world.succeeded():
            return {"success": True, "steps": k + 1, "statuses": statuses, "solve_s": solve}
    return {"success": False, "steps": max_steps, "statuses": statuses, "solve_s": solve,
            "final_distance": world.distance_to_goal()}


def run(env_name: str, planner: str, horizon: int, rate_hz: float, episodes: int,
        settings: dict | None = None, first_seed: int = 0, solve_budget: float = 0.0,
        model: str = "analytic", max_steps: int | None = None,
        progress: Callable[[dict], None] | None = None, command_delay: int = 0,
        plan_ahead: int = 0) -> dict:
    """A BENCH_FORMAT "closed_loop" row through the control core (``model`` analytic or learned).

    ``solve_budget`` is wall-clock seconds per cycle (0: 0.8 x period). A budget that never binds
    plus an iteration cap in ``settings`` makes the run deterministic, whatever the machine load.
    An episode fails after ``max_steps`` control periods (default 3 x horizon); ``progress`` is
    called with each episode's result. ``command_delay``: steps each command acts late
    (``run_episode``); ``plan_ahead``: the controller's (``ControlConfig``).
    """
    spec = model_spec_for(env_name, model, horizon)
    config = ControlConfig(period=1.0 / rate_hz, solve_budget=solve_budget, plan_ahead=plan_ahead)
    world = make_core_world(env_name, horizon, config.period)
    loop = build_control_loop(spec, planner, horizon, config, settings)
    results = []
    for i in range(episodes):
        results.append(run_episode(loop, world, first_seed + i, max_steps or 3 * horizon, command_delay))
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
            "max_episode_steps": max_steps or 3 * horizon, "command_delay_steps": command_delay,
            "plan_ahead": plan_ahead,
            "successes": [bool(r["success"]) for r in results],
            "final_distances": [r.get("final_distance", 0.0) for r in results]}

"""Exploration data from the simulators: a smoothed random policy, reset to a new place per episode.

The policy is a clipped AR(1) process, a_t = rho a_{t-1} + sqrt(1 - rho^2) sigma eps_t, so its
actions wander smoothly (and reach walls, slide along them and pass doors) instead of jittering
in place as white noise would. rho is drawn per episode from a range: persistent episodes keep
pushing into a wall for many steps, which is what teaches a model that walls hold (with short
pushes only, a learned model leaks through a wall under a planner's long push), and jittery
episodes cover turns. Each episode starts at a uniformly drawn free position of the whole
world, not only in the task's start region, so the model sees every part of the map; a fraction
of them start near an inner wall, where the dynamics are hard to learn (a wall must hold, a
door must let through) and which a uniform draw seldom visits.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from ..sim import NavEnv
from ..sim.dynamics import AGENT_RADIUS
from .dataset import TransitionData


@dataclass
class ExplorationSettings:
    smoothing: tuple[float, float] = (0.7, 0.98)
    """rho range: correlation of consecutive actions (0 = white noise, -> 1 = straight lines),
    drawn uniformly per episode."""
    scale: float = 0.8
    """sigma: stationary standard deviation of each action component before clipping to [-1, 1]."""
    near_wall_fraction: float = 0.5
    """Fraction of episodes that start within ``near_wall_margin`` of an inner wall."""
    near_wall_margin: float = 0.3
    """Distance from an inner wall (world units) that counts as near."""

    def validate(self) -> None:
        low, high = self.smoothing
        if not 0 <= low <= high < 1:
            raise ValueError(f"smoothing must be a range (low, high) inside [0, 1), got {self.smoothing}")
        if not self.scale > 0 or not self.near_wall_margin > 0:
            raise ValueError(f"scale and near_wall_margin must be > 0, got {self.scale}, {self.near_wall_margin}")
        if not 0 <= self.near_wall_fraction <= 1:
            raise ValueError(f"near_wall_fraction must be in [0, 1], got {self.near_wall_fraction}")


class SmoothedRandomPolicy:
    """Seeded AR(1) random actions in [-1, 1]^A; ``reset`` draws a new rho and first action."""

    def __init__(self, rng: np.random.Generator, action_dim: int = 2,
                 settings: ExplorationSettings | None = None):
        self.settings = settings or ExplorationSettings()
        self.settings.validate()
        self.rng, self.action_dim = rng, int(action_dim)
        self.reset()

    def reset(self) -> None:
        self.rho = self.rng.uniform(*self.settings.smoothing)
        self._state = self.settings.scale * self.rng.standard_normal(self.action_dim)

    def __call__(self) -> np.ndarray:
        rho, sigma = self.rho, self.settings.scale
        noise = self.rng.standard_normal(self.action_dim)
        self._state = rho * self._state + np.sqrt(1 - rho**2) * sigma * noise
        return np.clip(self._state, -1.0, 1.0)


def random_free_position(env: NavEnv, rng: np.random.Generator, near_wall: float = 0.0) -> np.ndarray:
    """A uniform position whose agent disk touches no wall; with ``near_wall`` > 0, uniform
    among those within that distance of an inner wall (of the whole map if it has none)."""
    boxes = np.asarray(env.layout.all_walls)
    inner = np.asarray(env.layout.walls).reshape(-1, 4)
    for _ in range(10000):
        p = rng.uniform(-1 + AGENT_RADIUS, 1 - AGENT_RADIUS, size=2)
        if ((p >= boxes[:, :2] - AGENT_RADIUS) & (p <= boxes[:, 2:] + AGENT_RADIUS)).all(1).any():
            continue
        if near_wall > 0 and len(inner):
            gap = np.maximum(np.maximum(inner[:, :2] - p, p - inner[:, 2:]), 0.0)   # [W, 2]
            if np.linalg.norm(gap, axis=1).min() > near_wall:
                continue
        return p
    raise RuntimeError(f"{env.name}: found no free position")


def collect_episodes(env: NavEnv, episodes: int, steps: int, seed: int,
                     settings: ExplorationSettings | None = None, progress: bool = True) -> TransitionData:
    """Roll the exploration policy for ``episodes`` x ``steps`` and record frames, joints, actions.

    The joints of the navigation sims are the agent's position (x, y). Seeded: the same
    arguments give the same arrays.
    """
    if episodes < 1 or steps < 1:
        raise ValueError(f"episodes and steps must be >= 1, got {episodes} and {steps}")
    rng = np.random.default_rng(seed)
    policy = SmoothedRandomPolicy(rng, 2, settings)
    S = env.camera.size
    images = np.empty((episodes, steps + 1, S, S, 3), np.uint8)
    joints = np.empty((episodes, steps + 1, 2), np.float32)
    actions = np.empty((episodes, steps, 2), np.float32)
    for n in tqdm(range(episodes), desc=f"collect {env.name}", unit="episode", disable=not progress):
        near = policy.settings.near_wall_margin if rng.random() < policy.settings.near_wall_fraction else 0.0
        env.position = random_free_position(env, rng, near)
        policy.reset()
        for t in range(steps + 1):
            images[n, t], joints[n, t] = env.render(), env.position
            if t < steps:
                actions[n, t] = policy()
                env.step(actions[n, t])
    meta = {"env": env.name, "image_size": S, "max_step": env.max_step, "horizon": env.horizon,
            "seed": int(seed), "source": "simulator", "policy": "smoothed_random",
            "smoothing": list(policy.settings.smoothing), "scale": policy.settings.scale,
            "near_wall_fraction": policy.settings.near_wall_fraction,
            "joint_names": ["x", "y"]}
    return TransitionData(images, joints, actions, meta)

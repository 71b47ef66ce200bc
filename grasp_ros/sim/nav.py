"""2-D point-mass navigation simulator: seeded episodes, step, success, camera."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .dynamics import PointMassDynamics
from .layouts import LAYOUTS, Layout, shortest_path_length
from .render import TopDownCamera

NOMINAL_HORIZON = 50


@dataclass(frozen=True)
class Episode:
    """A task: start and goal positions [2] (float64), and the seed that drew them."""

    start: np.ndarray
    goal: np.ndarray
    seed: int


class NavEnv:
    """A point mass in a walled square, stepped with the shared ``PointMassDynamics``.

    ``horizon`` sets the time resolution: the mass moves at most ``layout.reach / horizon`` per
    step (max-norm), so a plan of that horizon can cross the layout's longest task.
    """

    def __init__(self, layout: Layout, horizon: int = NOMINAL_HORIZON,
                 success_radius: float = 0.08, image_size: int = 64):
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        self.layout = layout
        self.horizon = int(horizon)
        self.max_step = layout.reach / self.horizon
        self.success_radius = float(success_radius)
        self.dynamics = PointMassDynamics(layout.all_walls, self.max_step)
        self.camera = TopDownCamera(layout.all_walls, image_size)
        self.position = np.zeros(2)
        self.goal = np.zeros(2)

    @property
    def name(self) -> str:
        return self.layout.name

    def sample_episode(self, seed: int) -> Episode:
        """Draw a feasible start/goal pair; the same seed always gives the same task."""
        rng = np.random.default_rng(seed)
        budget = self.layout.max_path_fraction * self.layout.reach
        for _ in range(1000):
            start, goal = self._uniform(rng, self.layout.start_region), self._uniform(
                rng, self.layout.goal_region)
            far_enough = np.linalg.norm(goal - start) > 4 * self.success_radius
            if far_enough and shortest_path_length(self.layout, start, goal) <= budget:
                return Episode(start, goal, seed)
        raise RuntimeError(f"no feasible episode found for {self.name} (seed {seed})")

    def reset(self, episode: Episode | int) -> np.ndarray:
        if not isinstance(episode, Episode):
            episode = self.sample_episode(int(episode))
        self.position, self.goal = episode.start.copy(), episode.goal.copy()
        return self.position.copy()

    def step(self, action) -> np.ndarray:
        """Apply one action (clipped to [-1, 1]^2; NaN treated as zero); return the new position."""
        a = np.nan_to_num(np.asarray(action, dtype=np.float64).reshape(2), nan=0.0)
        with torch.no_grad():
            nxt = self.dynamics(torch.from_numpy(self.position), torch.from_numpy(a))
        self.position = nxt.numpy()
        return self.position.copy()

    def execute(self, actions) -> np.ndarray:
        """Run a whole action sequence [H, 2] from the current position; return the path [H+1, 2]."""
        path = [self.position.copy()]
        for a in np.asarray(actions, dtype=np.float64).reshape(-1, 2):
            path.append(self.step(a))
        return np.stack(path)

    def distance_to_goal(self, position=None) -> float:
        p = self.position if position is None else np.asarray(position)
        return float(np.linalg.norm(p - self.goal))

    def success(self, position=None) -> bool:
        return self.distance_to_goal(position) <= self.success_radius

    def render(self, position=None, show_goal: bool = False) -> np.ndarray:
        """Camera image (RGB uint8 [S, S, 3]) of the agent at ``position`` (default: current)."""
        p = self.position if position is None else position
        return self.camera.render(p, self.goal if show_goal else None)

    @staticmethod
    def _uniform(rng, region) -> np.ndarray:
        x0, y0, x1, y1 = region
        return np.array([rng.uniform(x0, x1), rng.uniform(y0, y1)])


def make_env(name: str, horizon: int = NOMINAL_HORIZON, **kwargs) -> NavEnv:
    """The simulator called ``name`` (one of ``ENV_NAMES``) at the given planning horizon."""
    if name not in LAYOUTS:
        raise ValueError(f"unknown env {name!r}; choose one of {sorted(LAYOUTS)}")
    return NavEnv(LAYOUTS[name], horizon, **kwargs)


ENV_NAMES = tuple(LAYOUTS)

"""Wall layouts of the 2-D navigation worlds, and how each samples its start and goal.

The world is the square [-1, 1]^2 (metres, say). Walls are axis-aligned boxes
``(x_min, y_min, x_max, y_max)``; the world's border is made of four boxes outside the square so
that one contact rule handles every wall. Walls are at least 0.2 thick so that one dynamics
sub-step (at most 0.1, see ``dynamics.py``) can never tunnel through one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BORDER = (
    (-2.0, -2.0, -1.0, 2.0),
    (1.0, -2.0, 2.0, 2.0),
    (-2.0, -2.0, 2.0, -1.0),
    (-2.0, 1.0, 2.0, 2.0),
)

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Layout:
    """A world: its walls and the regions its episodes draw starts and goals from.

    ``reach`` is the path length (in the max-norm that bounds one step) that a plan of the
    layout's nominal horizon may cover: an env for horizon H moves at most ``reach / H`` per step,
    so every horizon solves the same physical tasks at a finer or coarser time resolution.
    ``waypoints`` (in order) are the corners a shortest path passes; episodes whose path through
    them is longer than ``max_path_fraction * reach`` are redrawn so every task is feasible.
    """

    name: str
    walls: tuple[Box, ...]
    start_region: Box
    goal_region: Box
    reach: float
    waypoints: tuple[tuple[float, float], ...] = ()
    max_path_fraction: float = 0.8
    description: str = ""
    all_walls: tuple[Box, ...] = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "all_walls", BORDER + tuple(self.walls))


def path_length(points: list[np.ndarray]) -> float:
    """Sum of max-norm lengths of a polyline: the number of full-size steps it takes."""
    return float(sum(np.abs(b - a).max() for a, b in zip(points[:-1], points[1:])))


LAYOUTS: dict[str, Layout] = {
    "open": Layout(
        name="open",
        walls=(),
        start_region=(-0.85, -0.85, 0.85, 0.85),
        goal_region=(-0.85, -0.85, 0.85, 0.85),
        reach=2.5,
        description="no walls: the goal is straight ahead",
    ),
    "wall_door": Layout(
        name="wall_door",
        # A vertical wall at x in [-0.1, 0.1] with a door at y in [0.3, 0.6] (cf. Wall-Single).
        walls=((-0.1, -2.0, 0.1, 0.3), (-0.1, 0.6, 0.1, 2.0)),  # run into the border: no seam
        start_region=(-0.85, -0.85, -0.35, 0.85),
        goal_region=(0.35, -0.85, 0.85, 0.85),
        reach=3.5,
        waypoints=((0.0, 0.45),),
        description="a wall with a narrow door between start and goal",
    ),
    "u_maze": Layout(
        name="u_maze",
        # A U opening to the left; the start is inside it and the goal behind its back, so the
        # agent must first move away from the goal, out of the U, and around an arm.
        walls=(
            (0.25, -0.6, 0.45, 0.6),
            (-0.45, 0.4, 0.45, 0.6),
            (-0.45, -0.6, 0.45, -0.4),
        ),
        start_region=(-0.25, -0.2, 0.1, 0.2),
        goal_region=(0.6, -0.3, 0.85, 0.3),
        reach=4.0,
        waypoints=((-0.6, 0.75), (0.6, 0.75)),
        description="the goal lies behind a U; the agent must first move away from it",
    ),
}


def shortest_path_length(layout: Layout, start: np.ndarray, goal: np.ndarray) -> float:
    """Length of the shortest route through the layout's waypoints (mirrored where symmetric)."""
    if not layout.waypoints:
        return path_length([start, goal])
    routes = [layout.waypoints]
    if layout.name == "u_maze":  # around the lower arm is as good as around the upper one
        routes.append(tuple((x, -y) for x, y in layout.waypoints))
    return min(path_length([start, *map(np.asarray, r), goal]) for r in routes)

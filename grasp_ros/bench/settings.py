"""The benchmark's planner settings: one fair, documented budget per planner.

Every planner plans with the same analytic model and task cost (squared terminal distance to
the goal), stops as soon as its best true rollout ends within half the success radius of the
goal (the same early-exit rule for all), and otherwise runs to its iteration cap:

* CEM: 300 samples, 30 elites, 30 iterations -- the sampling budget commonly used for CEM with
  latent world models (e.g. DINO-WM's planner), which the GRASP paper compares against.
* MPPI (ours and pytorch-mppi's): the same 300 samples x 30 iterations.
* GD: 200 Adam iterations through the full rollout (same cap as GRASP).
* GRASP: its defaults (``GraspSettings``): 200 iterations over 48 chains in one batch.
"""
from __future__ import annotations

HORIZONS = (25, 50, 100, 200)
ENVS = ("open", "wall_door", "u_maze")
PLANNERS = ("grasp", "cem", "mppi", "gd", "pytorch_mppi")


def early_exit_tolerance(success_radius: float) -> float:
    """Task-cost level at which every planner stops: terminal error of half the success radius."""
    return (0.5 * success_radius) ** 2


PLANNER_SETTINGS: dict[str, dict] = {
    "grasp": {},
    "cem": {"iterations": 30, "samples": 300, "elites": 30},
    "mppi": {"iterations": 30, "samples": 300},
    "gd": {"iterations": 200},
    "pytorch_mppi": {"iterations": 30, "samples": 300, "lambda_": 0.01, "noise_sigma": 0.5},
}

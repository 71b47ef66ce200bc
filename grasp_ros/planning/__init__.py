"""Planners behind one interface (pure torch, no ROS): GRASP and the baselines CEM, MPPI, GD."""
from __future__ import annotations

from typing import Any, Optional

from .base import Budget, Plan, Planner, PlannerSettings, PlanningError, WarmStart
from .cem import CemPlanner, CemSettings
from .costs import Cost, CostContext, Goal
from .gd import GdPlanner, GdSettings
from .grasp import GraspPlanner, GraspSettings
from .mppi import MppiPlanner, MppiSettings

PLANNERS: dict[str, type[Planner]] = {
    cls.name: cls for cls in (GraspPlanner, CemPlanner, MppiPlanner, GdPlanner)
}


def make_planner(name: str, model, horizon: int, settings: Optional[dict[str, Any]] = None,
                 seed: int = 0, device=None, allow_python: bool = False) -> Planner:
    """The planner called ``name`` with its defaults overridden by ``settings``.

    ``allow_python``: user cost terms (``costs["terms"]``, package.module:function) may be
    imported and run; without it they are refused."""
    if name not in PLANNERS:
        raise ValueError(f"unknown planner {name!r}; choose one of {sorted(PLANNERS)}")
    cls = PLANNERS[name]
    # The settings whole, not the defaults first: those need not fit this horizon (a batched
    # call's size, ``base.MAX_BATCH_STEPS``).
    return cls(model, horizon, settings=cls.Settings().changed(**(settings or {})), seed=seed,
               device=device, allow_python=allow_python)


__all__ = ["PLANNERS", "Budget", "CemPlanner", "CemSettings", "Cost", "CostContext", "GdPlanner",
           "GdSettings", "Goal", "GraspPlanner", "GraspSettings", "MppiPlanner", "MppiSettings",
           "Plan", "Planner", "PlannerSettings", "PlanningError", "WarmStart", "make_planner"]

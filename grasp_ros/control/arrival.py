"""The goal checker: whether the robot stands at its joint goal, so that a cycle stops it there.

A receding-horizon planner never says "done": near its goal it keeps planning, and a robot with
momentum, or a model a little wrong near the goal, hunts around it (a differential base drove
0.14-0.30 m about its goal for half a minute). Nav2's controller server asks a goal checker
(``SimpleGoalChecker``: ``xy_goal_tolerance``, ``yaw_goal_tolerance``) and stops; a
joint_trajectory_controller has goal tolerances per joint. Here: every goal joint's position
within its tolerance of the goal, and the cycle sends the stop (ARRIVED) instead of planning.

Once arrived, the robot stays stopped until a joint is more than ``RESUME_FACTOR`` tolerances
from the goal (pushed away, or a slow drift), or the goal changes (the same goal re-published is
no change): a robot with momentum still moving as it enters the tolerance coasts on after the
stop (a base at 0.1-0.4 m/s: up to 0.17 m), and must not start planning again at once
(hysteresis). ARRIVED therefore promises twice the tolerance; its reason says which.

The measured positions are the observation's joints where the model observes the goal's
joints, else the model's ``decode_state`` of the observation's latent (a camera model with a
joint head). Continuous joints (angles) are compared the short way round.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch

from ..models.card import ModelCard, wrap_to_nearest
from ..models.contract import decodes_joints
from ..planning.costs import decode_joints

RESUME_FACTOR = 2.0
"""Once arrived, planning resumes when a goal joint is more than this many tolerances away."""


class GoalChecker:
    """Arrival at a joint goal, within ``tolerance`` per goal joint (module docstring)."""

    def __init__(self, card: ModelCard, model, tolerance: Sequence[float]):
        goal = card.goal_joint_input
        if goal is None or "position" not in goal.fields:
            raise ValueError("goal_tolerance needs goals in joint positions: this model's card names "
                             "no goal joints with positions")
        names, tolerance = list(goal.names), [float(t) for t in tolerance]
        if len(tolerance) not in (1, len(names)):
            raise ValueError(f"goal_tolerance has {len(tolerance)} values: give one for every goal "
                             f"joint or one per goal joint ({len(names)}: {', '.join(names)})")
        self.names = names
        self.tolerance = np.broadcast_to(np.asarray(tolerance, dtype=np.float64), (len(names),)).copy()
        self._goal_columns = goal.position_columns(names)
        self._turns = np.flatnonzero(np.isin(names, goal.continuous + (card.joints.continuous if card.joints else ())))
        observed = card.joints is not None and set(names) <= set(card.joints.names) \
            and "position" in card.joints.fields
        self._observed_columns = card.joints.position_columns(names) if observed else None
        if not observed and not decodes_joints(model):
            raise ValueError(f"goal_tolerance needs the goal joints ({', '.join(names)}) measured: this "
                             "model observes no positions of them and has no decode_state joint head")
        self._model = model
        self._arrived_at: Optional[np.ndarray] = None   # the goal positions arrived at, while it stays

    def forget(self) -> None:
        """The next check starts afresh (a reset of the loop)."""
        self._arrived_at = None

    def check(self, goal_joints: Optional[np.ndarray], observed: Optional[np.ndarray],
              latent: torch.Tensor) -> Optional[str]:
        """Why the robot is at the goal (the cycle then stops it), or None.

        ``goal_joints``: the goal's joint vector in the goal joints' layout (None: a goal without
        joints, never arrived at); the same values again (a sender that re-publishes its goal)
        are the same goal. ``observed``: the observation's joint vector; ``latent`` [D]: the
        observation's."""
        if goal_joints is None:
            self._arrived_at = None
            return None
        target = np.asarray(goal_joints, dtype=np.float64)[self._goal_columns]
        staying = self._arrived_at is not None and np.array_equal(self._arrived_at, target)
        measured = self._measured(observed, latent)
        error = np.abs(measured - wrap_to_nearest(target, measured, self._turns))
        limit = self.tolerance * (RESUME_FACTOR if staying else 1.0)
        if not bool(np.all(error <= limit)):       # NaN: not arrived
            self._arrived_at = None
            return None
        self._arrived_at = target
        worst = int(np.argmax(error / self.tolerance))
        furthest = f"furthest {self.names[worst]} {error[worst]:.3g}, tolerance {self.tolerance[worst]:g}"
        if staying:     # it may have coasted past the tolerance after the stop
            return (f"at the goal: stopped there, every goal joint within {RESUME_FACTOR:g}x goal_tolerance "
                    f"({furthest}; planning resumes beyond)")
        return f"at the goal: every goal joint within goal_tolerance ({furthest})"

    def describe(self) -> str:
        """The checker in words, for the configure log."""
        return ("goal checker: a joint goal is reached when " + ", ".join(
            f"{name} is within {tol:g}" for name, tol in zip(self.names, self.tolerance))
            + f" (ARRIVED: the stop, no plan, until a joint is {RESUME_FACTOR:g}x as far or the goal changes)")

    def _measured(self, observed: Optional[np.ndarray], latent: torch.Tensor) -> np.ndarray:
        if self._observed_columns is not None:     # none this cycle: not known to be there
            if observed is None:
                return np.full(len(self.names), math.nan)
            return np.asarray(observed, dtype=np.float64)[self._observed_columns]
        with torch.no_grad():
            decoded = decode_joints(self._model, latent[None])[0]
        return decoded.detach().cpu().numpy().astype(np.float64)[self._goal_columns]

"""The goal a cycle plans towards, made ready for the planner (ROS-free).

A goal reaches the loop (``ControlLoop.set_goal``, ``set_goal_latent``) as a latent, as an
observation to encode, or as joint positions alone for a model that cannot encode them, which
the planner reaches through the model's ``decode_state`` joint head. ``GoalTarget.ready`` makes
a goal ready once and reuses it while the goal stands: encoded (or put on the device), scored
for novelty against the model's training data, with what a NOVEL status says of its joints.
Continuous joints (angles) are first wrapped to the turn nearest the measured ones, so a goal is
encoded again only when those turns change (the robot crossed +-pi).

The other goal modules: ``goals`` (which received messages become the goal), ``arrival`` (is
the robot there).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, NamedTuple, Optional

import numpy as np
import torch

from ..models.card import value_labels, wrap_to_nearest
from ..models.contract import decodes_joints
from ..models.text import shorten
from .encoding import encode, model_batch
from .inputs import Sample


LIMIT_SLACK = 1e-9
"""How far past a joint limit (a fraction of the joint's range, at least of 1) a goal may lie and
still be taken: a goal computed to be at the limit may round past it."""


class GoalRefused(Exception):
    """A goal that could not be made ready: refused from then on (its text: "goal refused: ...",
    what every later cycle of that goal says)."""


class _Wrapped(NamedTuple):
    """The last goal wrapped to the measured joints: the goal, the turns added, the result."""
    goal: Sample
    turns: tuple
    result: Sample


class GoalTarget:
    """Goals made ready for ``model`` and its ``planner`` (module docstring). ``on_failure(goal,
    message)`` hears of a goal that could not be made ready, so that the loop refuses it from
    then on instead of trying again every cycle."""

    def __init__(self, model, card, novelty, device, on_failure: Callable[[Sample, str], None],
                 joint_limits: Callable[[], Mapping[str, Any]] = dict):
        self.model, self.card, self.novelty, self.device = model, card, novelty, device
        self._on_failure = on_failure
        self._joint_limits = joint_limits     # the planner's costs.joint_limits, as they stand now
        self._joints_alone = int(getattr(model, "joint_dim", 0)) == 0 or card.pairs_joints
        self._continuous = [] if card.joints is None else card.joints.position_columns(card.joints.continuous)
        self._wrapped: Optional[_Wrapped] = None
        self._source: Optional[Sample] = None       # the goal the target was made from
        self.target: Optional[torch.Tensor] = None
        """The standing goal as the planner takes it: a latent [D] or a joint goal [J]."""
        self.novelty_score = math.nan
        """The standing goal's novelty (training spreads; NaN: a latent goal, or no statistics)."""
        self.out_of_range_note = ""
        """What NOVEL says of a joint goal's joints beyond their training range ("": none)."""
        self.furthest_note = ""
        """What NOVEL adds of the joint furthest from the training data ("": nothing)."""

    def takes_joint_goal(self, goal: Mapping[str, Any]) -> bool:
        """A goal of joints alone that the model cannot encode (it encodes no joints, or joints
        only with a camera frame): reached through its ``decode_state`` instead."""
        return set(goal) == {"joints"} and self._joints_alone

    def ready(self, goal: Sample, observation: Sample) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """(goal latent [D], None), or (None, joint goal [J]) for a joint-space goal, of ``goal``
        as the cycle of ``observation`` plans towards it."""
        goal = self._wrapped_to(goal, observation)
        if "latent" in goal.value:
            self.novelty_score, self.out_of_range_note, self.furthest_note = math.nan, "", ""
            return torch.as_tensor(goal.value["latent"], device=self.device), None
        in_joints = self.takes_joint_goal(goal.value)
        if in_joints and not decodes_joints(self.model):
            raise ValueError("the model cannot take a goal in joint space alone (it has no "
                             "decode_state joint head): give a goal image")
        if goal is not self._source:
            try:
                self._check_limits(goal.value.get("joints"))
                target, novelty = self._joint_target(goal) if in_joints else self._encoded(goal)
                out_of_range, furthest = self._joint_notes(goal.value.get("joints"), novelty)
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                self._on_failure(goal, reason)
                raise GoalRefused(f"goal refused: {reason}") from exc
            self._source, self.target, self.novelty_score = goal, target, novelty
            self.out_of_range_note, self.furthest_note = out_of_range, furthest
        return (None, self.target) if in_joints else (self.target, None)

    def distance(self, z: torch.Tensor, z_goal: Optional[torch.Tensor],
                 joint_goal: Optional[torch.Tensor]) -> float:
        """How far the observation's latent ``z`` is from the goal: in latent space, or for a
        joint-space goal between the decoded joint vector and it."""
        if z_goal is not None:
            return float((z - z_goal.to(z)).norm())
        with torch.no_grad():
            return float((self.model.decode_state(z[None])[0] - joint_goal.to(z)).norm())

    def range_warning(self) -> Optional[str]:
        """A warning when joint goals are scored by spreads alone: the model's statistics have
        the joints but not their training ranges."""
        if self.novelty is None or "joints" not in self.novelty.parts or "joints" in self.novelty.ranges:
            return None
        return ("this model's statistics keep no joint ranges (made before they were kept): a joint "
                "goal beyond where its joint ever went is NOVEL only once it is novelty_threshold "
                "spreads out; retrain it to have them (grasp-ros train keeps them)")

    def _labels(self, count: int) -> tuple[list[str], set[int]]:
        """The names of a goal's ``count`` joint values, and the columns of its continuous joints
        (they wrap: no range or limit bounds them; none where the card does not name the values)."""
        card = self.card.goal_joint_input
        labels = value_labels(card, count)
        named = card is not None and labels == card.labels
        return labels, set(card.position_columns(card.continuous)) if named else set()

    def check_limit_count(self) -> None:
        """Raise ``ValueError`` unless the joint limits (if any) give one value per value of the
        model's joint vector: limits of another count (another robot's file) bound nothing, and
        the goal check and a trajectory's position bounds would go quietly unchecked."""
        limits = self._joint_limits() or {}
        low = limits.get("low") or []
        if not low:
            return
        spec = self.card.goal_joint_input
        if spec is None:
            raise ValueError(f"cost.joint_limits_low/high give {len(low)} values, but the model's card "
                             "names no joints for them to bound")
        if len(low) != len(spec.labels):
            raise ValueError(f"cost.joint_limits_low/high give {len(low)} values; the model's joint vector "
                             f"has {len(spec.labels)}, one per joint and field: {shorten(', '.join(spec.labels))} "
                             "(limits of another robot?)")

    def _check_limits(self, joints) -> None:
        """Raise ``ValueError`` naming each of a goal's ``joints`` beyond its limit (none, or a
        goal of another count of values: nothing to check; continuous joints wrap: never)."""
        limits = self._joint_limits() or {}
        low, high = limits.get("low") or [], limits.get("high") or []
        if joints is None or not low:
            return
        values = np.asarray(joints, dtype=np.float64).reshape(-1)
        if values.size != len(low):
            return
        labels, wraps = self._labels(values.size)
        slack = LIMIT_SLACK * np.maximum(1.0, np.abs(np.asarray(high, dtype=np.float64) - low))
        beyond = [f"{labels[i]} {values[i]:.4g} outside [{low[i]:.4g}, {high[i]:.4g}]"
                  for i in range(values.size) if i not in wraps
                  and not low[i] - slack[i] <= values[i] <= high[i] + slack[i]]
        if beyond:
            raise ValueError(f"goal beyond the joint limits (cost.joint_limits_low/high): "
                             f"{shorten('; '.join(beyond))}; the robot cannot reach it")

    def _joint_target(self, goal: Sample) -> tuple[torch.Tensor, float]:
        """A joint-space goal on the device, scored against the joints the model was trained on
        (a goal it never saw drives the robot as far as it can go)."""
        target = torch.as_tensor(np.asarray(goal.value["joints"], dtype=np.float32), device=self.device)
        novelty = self.novelty.part_score("joints", target) if self.novelty is not None else math.nan
        return target, novelty

    def _encoded(self, goal: Sample) -> tuple[torch.Tensor, float]:
        """A goal observation's latent (``encode_goal``) and its novelty."""
        batch = model_batch(self.model, goal.value, self.device)
        target = encode(self.model, batch, goal=True)
        return target, self.novelty.score(batch, target) if self.novelty is not None else math.nan

    def _wrapped_to(self, goal: Sample, observation: Sample) -> Sample:
        """The goal with its continuous joints at their values nearest the measured ones
        (``wrap_to_nearest``); the same Sample while the turns it adds stay the same."""
        joints = self.card.joints
        measured = (observation.value or {}).get("joints")
        if (joints is None or not self._continuous or measured is None
                or "joints" not in goal.value or np.shape(goal.value["joints"]) != np.shape(measured)):
            return goal
        original = np.asarray(goal.value["joints"], dtype=np.float64)
        wrapped = wrap_to_nearest(original, np.asarray(measured, dtype=np.float64), self._continuous)
        turns = tuple(np.round((wrapped - original)[self._continuous] / (2 * np.pi)).astype(int))
        last = self._wrapped
        if last is not None and last.goal is goal and last.turns == turns:
            return last.result
        result = goal if not any(turns) else Sample({**goal.value, "joints": wrapped}, goal.stamp)
        self._wrapped = _Wrapped(goal, turns, result)
        return result

    def _joint_notes(self, joints, novelty: float) -> tuple[str, str]:
        """What a NOVEL status says of a goal's joints (None: it has none): those beyond their
        training range (``RANGE_MARGIN``; continuous joints wrap, so they have none), and the
        joint furthest from the training data where the joints made the goal's ``novelty``."""
        if joints is None or self.novelty is None or "joints" not in self.novelty.parts:
            return "", ""
        x = torch.as_tensor(np.asarray(joints, dtype=np.float32), device=self.device).reshape(-1)
        labels, wraps = self._labels(x.numel())
        beyond = [f"{labels[i]} {value:.3f} beyond its training range [{low:.3f}, {high:.3f}]"
                  for i, value, low, high in self.novelty.beyond_range("joints", x) if i not in wraps]
        furthest = ""
        if math.isfinite(novelty) and self.novelty.part_score("joints", x) >= novelty:
            furthest = f" (furthest: {shorten(labels[self.novelty.furthest('joints', x)], 80)})"
        return shorten("; ".join(beyond)) if beyond else "", furthest

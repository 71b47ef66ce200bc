"""The task cost every planner minimises: weighted terms over a trajectory, built from a plain dict.

Shapes: ``states`` [..., H+1, D] (s_0 .. s_H, s_0 the start), ``actions`` [..., H, A] (a_t leads
from s_t to s_{t+1}); a cost is [...], one number per trajectory.

A built-in term has a value v_t at every step t = 1..H (the state a_{t-1} leads to, and that
action) and adds ``terminal * v_H + running * mean_t v_t``. Because each term sees every step,
GRASP applies the same cost to its one-step predictions (``grasp.py``). The terms:

* latent goal  ||s_t - g||^2, when the goal has a latent g: terminal ``latent_goal``, running
  ``latent_goal * running_weight``;
* joint goal   ||(decode_state(s_t) - q) / u||^2, when the goal has joint positions q (the model's
  ``decode_state`` verb: latent -> joint vector), weighted like the latent goal by ``joint_goal``;
  u: ``joint_goal_scales``, each value's unit (default 1: its own, m or rad), so that a joint in
  metres beside joints in radians is not all but left out;
* effort       ||a_t||^2, running ``action_weight``;
* smoothness   ||a_t - a_{t-1}||^2, running ``smoothness``; at t = 0 the difference from the
  previously executed action when it is known (``CostContext.previous_action``), else 0;
* joint limits ||max(q_t - high, 0)||^2 + ||max(low - q_t, 0)||^2 of q_t = decode_state(s_t):
  zero inside the limits, growing quadratically outside (finite, so gradient planners started
  outside still find their way in); running ``joint_limits.weight``;
* user terms   ``package.module:function``, called as ``function(states, actions, goal, context)``
  -> [...] and added times their weight. Importing the module runs its code, so they load only
  when the caller allows Python code (the node's ``allow_python_models``; ``allow_python=True``).

``running_weight`` and ``action_weight`` are planner settings of their own (``PlannerSettings``);
the rest is the ``costs`` setting, a plain dict (``check_spec`` lists its keys and defaults).
With the defaults the cost is ``||s_H - g||^2 + running_weight * mean_t ||s_t - g||^2 +
action_weight * mean_t ||a_t||^2``, computed in that order (bit-for-bit ``task_cost``).
"""
from __future__ import annotations

import copy
import importlib
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Optional

import torch

from ..models.text import quote, shorten

COST_TERMS_DISABLED = ("Python cost terms are disabled: start the node with "
                       "allow_python_models:=true (in Python: allow_python=True)")

DEFAULT_SPEC: dict[str, Any] = {
    "latent_goal": 1.0,
    "joint_goal": 1.0,
    "joint_goal_scales": [],
    "smoothness": 0.0,
    "joint_limits": {"weight": 0.0, "low": [], "high": []},
    "terms": [],
}
"""The ``costs`` setting's keys and defaults; any subset may be given."""


@dataclass(frozen=True)
class Goal:
    """What a plan heads for: a latent [D], joint positions [J] (reached through the model's
    ``decode_state``), or both."""

    latent: Optional[torch.Tensor] = None
    joints: Optional[torch.Tensor] = None


@dataclass(frozen=True)
class CostContext:
    """What a cost may know besides the trajectory: the model, and the action executed just
    before this plan's first one ([A], None when unknown)."""

    model: Any
    previous_action: Optional[torch.Tensor] = None


def effort(actions: torch.Tensor) -> torch.Tensor:
    """mean_t ||a_t||^2 of action sequences [..., H, A] -> [...]."""
    return actions.pow(2).sum(-1).mean(-1)


def decode_joints(model, latents: torch.Tensor) -> torch.Tensor:
    """The model's joint head: latents [..., D] -> joint vectors [..., J]."""
    decode = getattr(model, "decode_state", None)
    if not callable(decode):
        raise ValueError(f"{type(model).__name__} has no decode_state(latent) -> joint vector: a "
                         "joint-space goal or joint-limit cost needs one")
    joints = decode(latents)
    if not isinstance(joints, torch.Tensor) or joints.shape[:-1] != latents.shape[:-1]:
        raise ValueError(f"decode_state returned {getattr(joints, 'shape', type(joints).__name__)} "
                         f"for latents of shape {tuple(latents.shape)}; expected [..., J]")
    return joints


# -- the spec -------------------------------------------------------------------------------

def check_spec(spec: Any) -> dict[str, Any]:
    """The ``costs`` setting, checked and completed with the defaults (a new dict).

    Keys (all optional): ``latent_goal``, ``joint_goal``, ``smoothness`` (weights >= 0);
    ``joint_goal_scales``: [J] units > 0 of the joint goal's values (empty: 1 each);
    ``joint_limits``: {"weight", "low": [J], "high": [J]}; ``terms``: a list of
    {"function": "package.module:function", "weight": w} or bare "package.module:function"
    (weight 1). Raises ``ValueError`` naming the first problem.
    """
    if not isinstance(spec, dict):
        raise ValueError(f"costs must be a dict, got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(DEFAULT_SPEC))
    if unknown:
        raise ValueError(f"costs: unknown keys {unknown}; known: {sorted(DEFAULT_SPEC)}")
    out = copy.deepcopy(DEFAULT_SPEC)
    for key in ("latent_goal", "joint_goal", "smoothness"):
        out[key] = _weight(spec.get(key, out[key]), f"costs.{key}")
    out["joint_limits"] = _check_limits(spec.get("joint_limits", out["joint_limits"]))
    scales = _numbers(spec.get("joint_goal_scales", out["joint_goal_scales"]), "costs.joint_goal_scales")
    if reason := joint_goal_scales_problem(scales, "costs.joint_goal_scales"):
        raise ValueError(reason)
    out["joint_goal_scales"] = scales
    terms = spec.get("terms", [])
    if not isinstance(terms, (list, tuple)):
        raise ValueError(f"costs.terms must be a list, got {type(terms).__name__}")
    out["terms"] = [_check_term(term) for term in terms]
    return out


def _weight(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number, got {quote(value)}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{what} must be finite and >= 0, got {value}")
    return float(value)


JOINT_GOAL_SCALE_RANGE = (1e-6, 1e6)
"""Units a joint goal's error may be divided by: the cost is float32, and a finer unit squares an
error past its range (1e-20 accepted made every plan NaN, an adversarial audit)."""


def joint_goal_scales_problem(scales, what: str) -> Optional[str]:
    """Why ``scales`` cannot be joint goal units (``JOINT_GOAL_SCALE_RANGE``), or None."""
    low, high = JOINT_GOAL_SCALE_RANGE
    if all(math.isfinite(u) and low <= u <= high for u in scales):
        return None
    return f"{what} must be in [{low:g}, {high:g}] (units of each goal value), got {list(scales)}"


def _numbers(values: Any, what: str) -> list[float]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{what} must be a list of numbers, got {quote(values)}")
    values = list(values)
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in values):
        raise ValueError(f"{what} must be finite numbers, got {quote(values)}")
    return [float(v) for v in values]


def _check_limits(limits: Any) -> dict[str, Any]:
    if not isinstance(limits, dict) or set(limits) - {"weight", "low", "high"}:
        raise ValueError(f"costs.joint_limits must be a dict with weight, low, high; got {quote(limits)}")
    weight = _weight(limits.get("weight", 0.0), "costs.joint_limits.weight")
    low = _numbers(limits.get("low", []), "costs.joint_limits.low")
    high = _numbers(limits.get("high", []), "costs.joint_limits.high")
    if len(low) != len(high):
        raise ValueError(f"costs.joint_limits: low has {len(low)} values, high {len(high)}; "
                         "give one of each per joint")
    if any(lo > hi for lo, hi in zip(low, high)):
        raise ValueError(f"costs.joint_limits need low <= high, got {low} / {high}")
    if weight > 0 and not low:
        raise ValueError("costs.joint_limits.weight > 0 needs the limits low and high")
    return {"weight": weight, "low": low, "high": high}


def _check_term(term: Any) -> dict[str, Any]:
    if isinstance(term, str):
        term = {"function": term}
    if not isinstance(term, dict) or "function" not in term or set(term) - {"function", "weight"}:
        raise ValueError("costs.terms entries must be 'package.module:function' or "
                         f"{{function: ..., weight: ...}}, got {quote(term)}")
    target = term["function"]
    module, _, name = target.partition(":") if isinstance(target, str) else ("", "", "")
    if not module or not name.isidentifier():
        raise ValueError(f"cost term {quote(target)} must look like 'package.module:function'")
    return {"function": target, "weight": _weight(term.get("weight", 1.0), f"cost term {target} weight")}


def load_term(target: str, allow_python: bool = False) -> Callable:
    """The user cost function named ``package.module:function``; imports it only if allowed."""
    if not allow_python:
        raise ValueError(f"cost term {quote(target)}: {COST_TERMS_DISABLED}")
    module_name, _, attr = target.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cost term {quote(target)} not found ({shorten(exc)})") from exc
    if not callable(function):
        raise ValueError(f"cost term {quote(target)} is a {type(function).__name__}, not a function")
    return function


# -- the terms ------------------------------------------------------------------------------

class _Trajectory:
    """One evaluation's inputs; the decoded joints are computed once, when a term asks."""

    def __init__(self, states, actions, goal: Goal, context: CostContext):
        self.states, self.actions, self.goal, self.context = states, actions, goal, context
        self.reached = states[..., 1:, :]                                      # s_1..s_H

    @cached_property
    def joints(self) -> torch.Tensor:
        return decode_joints(self.context.model, self.reached)               # [..., H, J]


@dataclass(frozen=True)
class _StepTerm:
    """A built-in term: per-step values [..., H] (None: does not apply) and its two weights."""

    steps: Callable[[_Trajectory], Optional[torch.Tensor]]
    terminal: float = 0.0
    running: float = 0.0

    def __call__(self, trajectory: _Trajectory) -> Optional[torch.Tensor]:
        v = self.steps(trajectory)
        if v is None:
            return None
        cost = self.terminal * v[..., -1] if self.terminal else None
        if self.running:
            cost = self.running * v.mean(-1) if cost is None else cost + self.running * v.mean(-1)
        return cost


def _latent_goal(tr: _Trajectory) -> Optional[torch.Tensor]:
    g = tr.goal.latent
    return None if g is None else (tr.reached - g).pow(2).sum(-1)


def _joint_goal(tr: _Trajectory) -> Optional[torch.Tensor]:
    q = tr.goal.joints
    return None if q is None else (tr.joints - q).pow(2).sum(-1)


def _scaled_joint_goal(scales: torch.Tensor):
    def steps(tr: _Trajectory) -> Optional[torch.Tensor]:
        q = tr.goal.joints
        return None if q is None else ((tr.joints - q) / scales.to(q)).pow(2).sum(-1)
    return steps


def _effort(tr: _Trajectory) -> torch.Tensor:
    return tr.actions.pow(2).sum(-1)


def _smoothness(tr: _Trajectory) -> torch.Tensor:
    a = tr.actions
    before = tr.context.previous_action
    before = a[..., :1, :] if before is None else before.to(a).expand_as(a[..., :1, :])
    return (a - torch.cat([before, a[..., :-1, :]], dim=-2)).pow(2).sum(-1)


def _limit_barrier(low: torch.Tensor, high: torch.Tensor):
    def steps(tr: _Trajectory) -> torch.Tensor:
        q = tr.joints
        return ((q - high.to(q)).clamp_min(0).pow(2) + (low.to(q) - q).clamp_min(0).pow(2)).sum(-1)
    return steps


@dataclass(frozen=True)
class _UserTerm:
    name: str
    function: Callable
    weight: float

    def __call__(self, tr: _Trajectory) -> torch.Tensor:
        value = self.function(tr.states, tr.actions, tr.goal, tr.context)
        batch = tr.states.shape[:-2]
        if not isinstance(value, torch.Tensor) or value.shape != batch:
            raise ValueError(f"cost term {quote(self.name)} returned "
                             f"{getattr(value, 'shape', type(value).__name__)}; expected one "
                             f"cost per trajectory, shape {tuple(batch)}")
        return self.weight * value


class Cost:
    """``cost(states, actions, goal, context) -> [...]``: the sum of the spec's terms."""

    def __init__(self, spec: dict[str, Any], running_weight: float = 0.0, action_weight: float = 0.0,
                 model=None, allow_python: bool = False, device=None):
        spec = check_spec(spec)
        lw, jw = spec["latent_goal"], spec["joint_goal"]
        joint_goal = _joint_goal
        if spec["joint_goal_scales"]:
            scales = torch.tensor(spec["joint_goal_scales"], dtype=torch.float32, device=device)
            self._check_joint_count(model, len(scales), device, "costs.joint_goal_scales (the "
                                    "controller's cost.joint_goal_scales)")
            joint_goal = _scaled_joint_goal(scales)
        self._goal_terms = [_StepTerm(_latent_goal, lw, lw * running_weight),
                            _StepTerm(joint_goal, jw, jw * running_weight)]
        limits = spec["joint_limits"]
        terms: list[Callable] = [*self._goal_terms,
                                 _StepTerm(_effort, running=action_weight),
                                 _StepTerm(_smoothness, running=spec["smoothness"])]
        if limits["weight"]:
            low, high = (torch.tensor(limits[k], dtype=torch.float32, device=device) for k in ("low", "high"))
            self._check_joint_count(model, len(low), device)
            terms.append(_StepTerm(_limit_barrier(low, high), running=limits["weight"]))
        terms += [_UserTerm(t["function"], load_term(t["function"], allow_python), t["weight"])
                  for t in spec["terms"] if t["weight"]]
        # Terms that add nothing are dropped here, so the hot path has no zero terms.
        self._terms = [t for t in terms if not isinstance(t, _StepTerm) or t.terminal or t.running]
        self._goal_weights = (lw, jw)
        self._user_terms = any(isinstance(t, _UserTerm) for t in self._terms)
        self.model = model

    def __call__(self, states: torch.Tensor, actions: torch.Tensor, goal: Goal,
                 context: CostContext) -> torch.Tensor:
        trajectory = _Trajectory(states, actions, goal, context)
        total = None
        for term in self._terms:
            value = term(trajectory)
            if value is not None:
                total = value if total is None else total + value
        if total is None:   # no term applies: every plan is as good (a zero the gradient reaches)
            total = (states * 0.0).sum(dim=(-2, -1))
        return total

    def goal_steps(self, states: torch.Tensor, goal: Goal, context: CostContext) -> torch.Tensor:
        """Per-step goal distances [..., H] of trajectories [..., H+1, D] (s_1..s_H), each goal
        term's times its terminal weight: GRASP's dense goal term."""
        trajectory = _Trajectory(states, None, goal, context)
        total = None
        for term in self._goal_terms:
            v = term.steps(trajectory) if term.terminal else None
            if v is not None:
                v = term.terminal * v
                total = v if total is None else total + v
        return (states[..., 1:, :] * 0.0).sum(-1) if total is None else total

    def goal_problem(self, goal: Goal) -> Optional[str]:
        """Why no plan can head for ``goal``: each part it has is weighted 0 and no term of the
        user's could read it (None: it can). A plan towards nothing would command whatever its
        start was, reported OK."""
        latent_weight, joint_weight = self._goal_weights
        if self._user_terms or (goal.latent is not None and latent_weight > 0) or (
                goal.joints is not None and joint_weight > 0):
            return None
        if goal.joints is not None and goal.latent is None:
            return ("the goal is joint positions alone and the joint goal's weight is 0 "
                    "(cost.joint_goal_weight): nothing to plan towards; weigh it, or give a goal image")
        return "every part of the goal is weighted 0 (the cost's latent_goal, joint_goal): nothing to plan towards"

    def check_goal(self, goal: Goal, probe: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``goal`` fits the model (probe: a latent [D])."""
        if goal.latent is None and goal.joints is None:
            raise ValueError("a plan needs a goal: a latent, joint positions, or both")
        problem = self.goal_problem(goal)
        if problem:
            raise ValueError(problem)
        if goal.joints is not None:
            with torch.no_grad():
                J = int(decode_joints(self.model, probe[None])[0].shape[-1])
            if goal.joints.shape != (J,):
                raise ValueError(f"joint goal must have shape ({J},) (decode_state's joints), "
                                 f"got {tuple(goal.joints.shape)}")

    @staticmethod
    def _check_joint_count(model, count: int, device,
                           what: str = "costs.joint_limits (the controller's cost.joint_limits_low/high)") -> None:
        if model is None:
            raise ValueError(f"{what.split(' ')[0]} need the model (its decode_state)")
        D = int(model.latent_dim)
        with torch.no_grad():
            J = int(decode_joints(model, torch.zeros(1, D, device=device)).shape[-1])
        if J != count:
            raise ValueError(f"{what} give {count} values; the model's decode_state "
                             f"returns {J}: one per joint and field, in the card's order (for positions "
                             "and velocities: j0.position, j0.velocity, j1.position, ...; grasp-ros info "
                             "lists them)")


def task_cost(states: torch.Tensor, goal: torch.Tensor, running_weight: float,
              actions: Optional[torch.Tensor] = None, action_weight: float = 0.0) -> torch.Tensor:
    """The default cost of trajectories [..., H+1, D] towards the goal latent [D]:

        ||s_H - g||^2 + w * mean_t ||s_t - g||^2 + w_a * mean_t ||a_t||^2
    """
    if actions is None:
        action_weight, actions = 0.0, states.new_zeros(*states.shape[:-2], 1, 1)
    cost = Cost({}, running_weight, action_weight)
    return cost(states, actions, Goal(latent=goal), CostContext(None))

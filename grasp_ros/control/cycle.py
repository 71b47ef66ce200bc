"""The receding-horizon control cycle, free of ROS: observe, plan with a warm start, command.

One ``ControlLoop.step(now)`` per control period:

1. take the newest observation and the goal. No observation, one older than
   ``max_observation_age``, or no goal: the ``on_stale`` action (hold or zero), STALE;
2. encode the observation and plan from the previous plan shifted by the control periods
   elapsed since it was made, within the solve budget; the plan's first action is the command, OK;
3. the solve overran the budget: the previous plan's action for now, FALLBACK;
   the model or the planner raised, or produced NaN: zero, ERROR (and the loop keeps running);
4. a final guard: every command is finite and inside the model's action bounds.

Other threads feed the loop (``observe``, ``set_goal``, ``request_settings``, ``reset``...) while
``step`` runs on the control thread: they only leave requests in an inbox guarded by a lock, and
the model and the planner are only ever touched by ``step`` (and ``warm_up``, before the first).

Clocks: ``now`` and observation stamps are seconds on the caller's clock (a ROS node's clock, so
simulated time works); solve time and the solve budget are wall-clock seconds, since computing
takes real time whatever the simulation does. Symbols: ``H`` horizon, ``D`` latent, ``A`` action.
"""
from __future__ import annotations

import dataclasses
import enum
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np
import torch

from ..planning import Budget, Plan

ON_STALE_CHOICES = ("hold", "zero")


class Status(enum.IntEnum):
    """Outcome of one cycle; the values are grasp_ros/msg/PlanDiagnostics' STATUS_* constants."""

    OK = 0
    STALE = 1
    FALLBACK = 2
    ERROR = 3
    INACTIVE = 4


@dataclass
class ControlConfig:
    """Timing and safety settings of the loop (the action bounds come from the model)."""

    period: float = 0.1
    """Control period (s, caller's clock): ``step`` is called once per period."""
    solve_budget: float = 0.0
    """Wall-clock seconds one step may spend encoding and planning; 0 means 0.8 x period."""
    max_observation_age: float = 0.5
    """An observation older than this (s, caller's clock) is stale."""
    on_stale: str = "zero"
    """Command while stale: "hold" repeats the last command sent, "zero" sends zeros."""

    @property
    def deadline(self) -> float:
        """The solve budget in effect (s, wall clock)."""
        return self.solve_budget if self.solve_budget > 0 else 0.8 * self.period

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{f.name} must be finite, got {value}")
        if self.period <= 0:
            raise ValueError(f"period must be > 0 s, got {self.period}")
        if self.solve_budget < 0:
            raise ValueError(f"solve_budget must be >= 0 s (0: 0.8 x period), got {self.solve_budget}")
        if self.max_observation_age <= 0:
            raise ValueError(f"max_observation_age must be > 0 s, got {self.max_observation_age}")
        if self.on_stale not in ON_STALE_CHOICES:
            raise ValueError(f"on_stale must be one of {list(ON_STALE_CHOICES)}, got {self.on_stale!r}")


@dataclass
class StepResult:
    """What one cycle decided. ``actions`` [N, A] are the commands from now on (row 0 is
    ``command``): the whole plan when OK, the previous plan's remainder on FALLBACK, else one row.
    ``path`` [N+1, 2] is the model's predicted positions along ``actions`` (None without
    ``model.position``); ``plan`` is the plan solved this cycle (None when none was solved)."""

    command: np.ndarray
    status: Status
    message: str = ""
    actions: Optional[np.ndarray] = None
    path: Optional[np.ndarray] = None
    plan: Optional[Plan] = None
    solve_time: float = 0.0
    iterations: int = 0
    cost: float = math.nan
    residual: float = math.nan
    observation_age: float = math.inf
    deadline_missed: bool = False
    warm_started: bool = False
    goal_distance: float = math.nan


@dataclass
class _Input:
    """An inbox entry: an observation (arrays without batch dimension) or why it was refused."""

    value: Optional[Mapping[str, np.ndarray]]
    stamp: float = math.nan
    error: str = ""


class ControlLoop:
    """Receding-horizon control around one world model and one planner (see module docstring)."""

    OVERRUN_WINDOW = 20
    """Cycles over which the planner's overrun past its own time limit is remembered."""
    MARGIN = 0.1
    """Fraction of the solve budget kept free for the jitter of that overrun."""

    def __init__(self, model, planner, config: ControlConfig):
        config.validate()
        self.model, self.planner, self.config = model, planner, config
        self.low = model.action_low.detach().cpu().numpy().astype(np.float64)
        self.high = model.action_high.detach().cpu().numpy().astype(np.float64)
        self.safe_zero = np.clip(np.zeros_like(self.low), self.low, self.high)
        self.image_size = int(getattr(model, "image_size", 0))
        self.joint_dim = int(getattr(model, "joint_dim", 0))
        self._lock = threading.Lock()
        self._observation: Optional[_Input] = None
        self._goal: Optional[_Input] = None
        self._goal_latent: Optional[torch.Tensor] = None
        self._encoded_goal: Optional[_Input] = None     # the goal entry _goal_latent encodes
        self._pending_settings: dict[str, Any] = {}
        self._reset_requested = False
        self._last_command = self.safe_zero.copy()
        self._plan: Optional[Plan] = None
        self._plan_time = math.nan
        # The planner checks its time limit once per iteration and then rolls the best plan out,
        # so it always finishes a little after the limit: ask it to stop early by the largest
        # overrun seen lately (a quarter of the budget until there is a measurement) plus a margin.
        self._overruns: deque[float] = deque(maxlen=self.OVERRUN_WINDOW)

    # -- inbox: called from any thread ------------------------------------------------------

    def observe(self, observation: Mapping[str, np.ndarray], stamp: float) -> None:
        """The newest observation ("image" uint8 [S, S, 3] RGB and/or "joints" [J]), stamped in s."""
        with self._lock:
            self._observation = _Input(dict(observation), float(stamp))

    def reject_observation(self, reason: str, stamp: float) -> None:
        """The newest observation could not be used (bad encoding, size...): ERROR until a good one."""
        with self._lock:
            self._observation = _Input(None, float(stamp), reason)

    def set_goal(self, observation: Mapping[str, np.ndarray]) -> None:
        """A goal given as an observation; ``model.encode_goal`` encodes it at the next step."""
        with self._lock:
            self._goal = _Input(dict(observation))

    def set_goal_latent(self, latent) -> None:
        """A goal given directly as a latent [D]."""
        z = torch.as_tensor(np.asarray(latent, dtype=np.float32)).reshape(-1)
        if z.numel() != int(self.model.latent_dim) or not bool(torch.isfinite(z).all()):
            raise ValueError(f"goal latent must be {int(self.model.latent_dim)} finite values, "
                             f"got {z.tolist()}")
        with self._lock:
            self._goal = _Input({"latent": z.numpy()})

    def reject_goal(self, reason: str) -> None:
        """The newest goal could not be used: ERROR until a good one arrives."""
        with self._lock:
            self._goal = _Input(None, error=reason)

    def check_settings(self, **changes: Any) -> None:
        """Raise ValueError with the reason if ``planner.configure(**changes)`` would fail."""
        names = {f.name for f in dataclasses.fields(self.planner.settings)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"planner {self.planner.name!r} has no setting {', '.join(unknown)} "
                             f"(its settings: {', '.join(sorted(names))})")
        dataclasses.replace(self.planner.settings, **changes).validate()

    def request_settings(self, **changes: Any) -> None:
        """Planner settings to apply at the start of the next step (validated now)."""
        self.check_settings(**changes)
        with self._lock:
            self._pending_settings.update(changes)

    def configure(self, **changes: Any) -> None:
        """Change ``ControlConfig`` fields (validated); they apply from the next step."""
        config = dataclasses.replace(self.config, **changes)
        config.validate()
        self.config = config

    def reset(self) -> None:
        """Forget the warm start and rewind the planner's random stream, before the next step."""
        with self._lock:
            self._reset_requested = True

    # -- control thread ---------------------------------------------------------------------

    def warm_up(self) -> None:
        """Two small solves before the first cycle: one so that it does not pay for torch's lazy
        set-up, one timed like a cycle's to measure how far the planner overruns its limit."""
        z0 = torch.zeros(int(self.model.latent_dim), device=self.planner.device)
        self.planner.plan(z0, z0 + 0.1, budget=Budget(max_iterations=2))
        limit = 0.5 * self.config.deadline
        plan = self.planner.plan(z0, z0 + 0.1, budget=Budget(max_seconds=limit))
        self._overruns.append(max(plan.solve_time - limit, 0.0))
        self.planner.reset()

    def idle(self, message: str = "inactive") -> StepResult:
        """The result to publish while not controlling: zero command, INACTIVE."""
        self._last_command = self.safe_zero.copy()
        return StepResult(self.safe_zero.copy(), Status.INACTIVE, message,
                          actions=self.safe_zero[None].copy())

    def step(self, now: float) -> StepResult:
        """One control cycle at time ``now`` (s, caller's clock)."""
        start = time.perf_counter()
        with self._lock:
            sample, goal = self._observation, self._goal
            changes, self._pending_settings = self._pending_settings, {}
            reset, self._reset_requested = self._reset_requested, False
        if reset:
            self._plan, self._plan_time = None, math.nan
            self.planner.reset()
        age = now - sample.stamp if sample is not None else math.inf
        try:
            if changes:
                self.planner.configure(**changes)
            if sample is None:
                return self._finish(self._stale("no observation yet"), age)
            if age > self.config.max_observation_age:
                return self._finish(self._stale(
                    f"newest observation is {age:.3f} s old (max_observation_age "
                    f"{self.config.max_observation_age:g} s)"), age)
            if sample.error:
                return self._finish(self._error(f"observation refused: {sample.error}"), age)
            if goal is None:
                return self._finish(self._stale("no goal yet"), age)
            if goal.error:
                return self._finish(self._error(f"goal refused: {goal.error}"), age)
            z_goal = self._goal_for(goal)
            z = self._encode(sample.value, goal=False)
            return self._finish(self._plan_and_command(z, z_goal, now, start), age)
        except Exception as exc:  # a user's model may raise anything: report it, command zero, go on
            return self._finish(self._error(f"{type(exc).__name__}: {exc}"), age)

    # -- the steps of a cycle ---------------------------------------------------------------

    def _plan_and_command(self, z, z_goal, now: float, start: float) -> StepResult:
        deadline = self.config.deadline
        warm = self._warm_start(now)
        overrun = max(self._overruns) if self._overruns else 0.25 * deadline
        remaining = deadline - (time.perf_counter() - start) - overrun - self.MARGIN * deadline
        limit = max(remaining, 1e-6)   # out of time already: the planner returns its initial plan
        plan = self.planner.plan(z, z_goal, warm, Budget(max_seconds=limit))
        self._overruns.append(max(plan.solve_time - limit, 0.0))
        missed = time.perf_counter() - start > deadline
        result = StepResult(self.safe_zero.copy(), Status.OK, plan=plan,
                            solve_time=plan.solve_time, iterations=plan.iterations,
                            cost=plan.cost, residual=plan.dynamics_residual,
                            deadline_missed=missed, warm_started=warm is not None,
                            goal_distance=float((z - z_goal.to(z)).norm()))
        if missed:
            previous = self._remaining(now)
            if previous is None:
                result.status, result.message = Status.FALLBACK, (
                    f"solve took {time.perf_counter() - start:.3f} s > budget {deadline:.3f} s; "
                    "no previous plan left: zero")
                result.actions = self.safe_zero[None].copy()
            else:
                actions, states = previous
                result.status, result.message = Status.FALLBACK, (
                    f"solve took {time.perf_counter() - start:.3f} s > budget {deadline:.3f} s; "
                    "sent the previous plan's action")
                result.actions, result.path = actions, self._positions(states)
        else:
            result.actions = plan.actions.detach().cpu().numpy().astype(np.float64)
            result.path = self._positions(plan.states)
        # A late plan is still the freshest solution: it warm-starts the next cycle.
        self._plan, self._plan_time = plan, now
        result.command = result.actions[0]
        return result

    def _warm_start(self, now: float):
        """The previous plan shifted by the whole periods elapsed since it was made, or None."""
        k = self._periods_since_plan(now)
        if k is None or k >= self._plan.horizon:
            return None
        return self._plan.shifted(k)

    def _remaining(self, now: float):
        """The previous plan's actions [N, A] from now on and their states [N+1, D], or None."""
        k = self._periods_since_plan(now)
        if k is None or k >= self._plan.horizon:
            return None
        return (self._plan.actions[k:].detach().cpu().numpy().astype(np.float64),
                self._plan.states[k:])

    def _periods_since_plan(self, now: float) -> Optional[int]:
        if self._plan is None:
            return None
        return max(0, round((now - self._plan_time) / self.config.period))

    def _goal_for(self, goal: _Input) -> torch.Tensor:
        """The goal latent [D]; a goal observation is encoded once and then reused."""
        if "latent" in goal.value:
            return torch.as_tensor(goal.value["latent"], device=self.planner.device)
        if self._goal_latent is None or goal is not self._encoded_goal:
            try:
                self._goal_latent = self._encode(goal.value, goal=True)
            except Exception as exc:  # remember the failure: no re-encoding every cycle
                with self._lock:
                    if self._goal is goal:
                        self._goal = _Input(None, error=f"{type(exc).__name__}: {exc}")
                raise
            self._encoded_goal = goal
        return self._goal_latent

    def _encode(self, observation: Mapping[str, np.ndarray], goal: bool) -> torch.Tensor:
        """Latent [D] of one observation (batched for the model as [1, ...])."""
        batch = {}
        for key, value in observation.items():
            declared = self.image_size if key == "image" else self.joint_dim if key == "joints" else 0
            if not declared:
                raise ValueError(f"the model does not take {key!r} observations "
                                 f"(image_size={self.image_size}, joint_dim={self.joint_dim})")
            tensor = torch.as_tensor(np.ascontiguousarray(value), device=self.planner.device)
            batch[key] = tensor if key == "image" else tensor.to(torch.float32)
            batch[key] = batch[key].unsqueeze(0)
        with torch.no_grad():
            z = (self.model.encode_goal if goal else self.model.encode)(batch)
        z = torch.as_tensor(z).reshape(-1)
        what = "encode_goal" if goal else "encode"
        if z.numel() != int(self.model.latent_dim):
            raise ValueError(f"model.{what} returned {z.numel()} values, "
                             f"expected {int(self.model.latent_dim)}")
        if not bool(torch.isfinite(z).all()):
            raise ValueError(f"model.{what} returned NaN/Inf")
        return z.to(torch.float32)

    def _positions(self, states: torch.Tensor) -> Optional[np.ndarray]:
        """Predicted positions [N, 2 or 3] of latent states [N, D], or None where the model has
        none (or gives something else: they are only for display)."""
        position = getattr(self.model, "position", None)
        if position is None:
            return None
        with torch.no_grad():
            p = position(states)
        if p is None:
            return None
        p = p.detach().cpu().numpy().astype(np.float64)
        usable = p.ndim == 2 and p.shape[1] in (2, 3) and np.isfinite(p).all()
        return p if usable else None

    def _stale(self, message: str) -> StepResult:
        hold = self.config.on_stale == "hold"
        command = self._last_command.copy() if hold else self.safe_zero.copy()
        return StepResult(command, Status.STALE, f"{message}: {'hold' if hold else 'zero'}",
                          actions=command[None].copy())

    def _error(self, message: str) -> StepResult:
        return StepResult(self.safe_zero.copy(), Status.ERROR, f"{message}: zero",
                          actions=self.safe_zero[None].copy())

    def _finish(self, result: StepResult, age: float) -> StepResult:
        """The final guard: whatever happened above, the command is finite and within bounds."""
        result.observation_age = age
        actions = np.asarray(result.actions if result.actions is not None else result.command[None],
                             dtype=np.float64).reshape(-1, self.low.size)
        if not np.isfinite(actions[0]).all():
            result.status = Status.ERROR
            result.message = f"non-finite command {actions[0].tolist()} replaced by zero"
            actions, result.path = self.safe_zero[None].copy(), None
        result.actions = np.clip(np.nan_to_num(actions, nan=0.0, posinf=0.0, neginf=0.0),
                                 self.low, self.high)
        result.command = result.actions[0].copy()
        self._last_command = result.command.copy()
        return result

"""The receding-horizon control cycle, free of ROS: observe, plan with a warm start, command.

A cycle at time ``now`` has three phases, so that planning can run on another thread while the
command still goes out by the cycle's deadline (``runner.CycleRunner`` does that; ``step`` runs
all three in the calling thread):

1. ``prepare(now)``: take the newest observation and the goal. The clock jumped back: CLOCK
   (buffers and warm start cleared); the cycles came several periods apart, cycle after cycle
   (``cycle_gaps``: a coarse /clock): CLOCK with zero. No observation, one older than
   ``max_observation_age``, or no goal: STALE (``on_stale``: hold for at most ``hold_timeout``,
   or zero). A refused input (bad encoding, a stamp in the future...): ERROR with zero.
   Otherwise a ``Job``.
2. ``solve(job, deadline)``: encode and measure novelty against the model's training
   statistics: input unlike the training data is NOVEL with zero; the robot at its joint goal
   (``goal_tolerance``, ``arrival``) ARRIVED with zero, unplanned. Otherwise plan from the
   previous plan shifted by the periods really elapsed (re-targeted to a new goal). The plan
   becomes the warm start whether or not it came in time. With ``plan_ahead`` the plan starts
   from the model's next state under the command the robot holds: the command of a cycle that
   plans for most of its period takes effect a period late. The model or planner raised: ERROR
   with zero.
3. ``conclude(job, outcome)``: the plan's first action, OK; fewer than ``min_iterations``
   iterations: TRUNCATED (still the plan's action, which includes the warm start); whatever
   ``solve`` decided instead. A solve not finished by the deadline: ``late(job, reason)``, the
   previous plan's action for now, FALLBACK.

A final guard makes every command finite and inside the model's action bounds.

Other threads feed the loop (``observe``, ``set_goal``, ``request_planner_settings``, ``reset``...): they
only leave requests in an inbox guarded by a lock. The planner is only run by ``solve`` (and
``warm_up``), never twice at a time; while a late solve runs, a FALLBACK cycle may still call the
model's ``position`` for its path (an inference of its own: no state is shared). Which
observation a cycle takes is ``observations.ObservationInbox``'s rule; the goal made ready for the
planner is ``goal_target.GoalTarget``'s.

Clocks: ``now`` and stamps are seconds on the caller's clock (a ROS node's clock, so simulated
time works); solve time and budgets are wall-clock seconds, since computing takes real time
whatever the simulation does. ``timing`` "fixed_iterations" drops the wall clock from planning
altogether (every cycle runs the planner's iteration cap): deterministic, for lock-step
simulation and replay. Symbols: ``H`` horizon, ``D`` latent, ``A`` action.
"""
from __future__ import annotations

import dataclasses
import enum
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np
import torch

from ..models.card import card_for, decimal_bound
from ..models.contract import decodes_joints
from ..models.novelty import DEFAULT_NOVELTY_THRESHOLD, novelty_for, novelty_text
from ..planning import Budget, Plan
from ..planning.costs import decode_joints
from ..planning.rollout import model_step
from . import reasons
from .arrival import GoalChecker
from .cycle_gaps import CycleGaps, JumpsBack
from .encoding import encode, model_batch
from .goal_target import GoalRefused, GoalTarget
from .inputs import Sample
from .observations import ObservationInbox, lead_hint, time_base_hint
from .replayed import ReplayedCycles

ON_STALE_CHOICES = ("hold", "zero")
TIMING_CHOICES = ("realtime", "fixed_iterations")


class Status(enum.IntEnum):
    """Outcome of one cycle; the values are grasp_ros/msg/PlanDiagnostics' STATUS_* constants."""

    OK = 0
    STALE = 1
    FALLBACK = 2
    ERROR = 3
    INACTIVE = 4
    TRUNCATED = 5
    NOVEL = 6
    CLOCK = 7
    ARRIVED = 8

    @property
    def severity(self) -> str:
        """"error", "warn" or "ok": how /diagnostics and the log weigh a cycle of this status."""
        if self in (Status.ERROR, Status.CLOCK):
            return "error"
        if self in (Status.STALE, Status.FALLBACK, Status.TRUNCATED, Status.NOVEL):
            return "warn"
        return "ok"


@dataclass
class ControlConfig:
    """Timing and safety settings of the loop (the action bounds come from the model)."""

    period: float = 0.1
    """Control period (s, caller's clock): one cycle per period."""
    solve_budget: float = 0.0
    """Wall-clock seconds from a cycle's start to its command; 0 means 0.8 x period."""
    max_observation_age: float = 0.5
    """An observation older than this (s, caller's clock) is stale."""
    on_stale: str = "zero"
    """Command while stale: "hold" repeats the last planned command (for at most
    ``hold_timeout``), "zero" sends zeros."""
    hold_timeout: float = 0.5
    """Longest time (s, caller's clock) "hold" keeps a command standing; then zero."""
    max_stamp_lead: float = 0.05
    """An input stamped further than this (s) ahead of the clock is refused."""
    min_iterations: int = 1
    """A cycle whose planner ran fewer iterations is TRUNCATED, not OK."""
    timing: str = "realtime"
    """"realtime": plan within the wall-clock budget; "fixed_iterations": every cycle runs the
    planner's iteration cap and nothing depends on the wall clock (deterministic)."""
    novelty_threshold: float = DEFAULT_NOVELTY_THRESHOLD
    """Observation or goal novelty above this (training spreads) is NOVEL, zero; 0 disables."""
    clock_timeout: float = 1.0
    """Wall seconds without a cycle (a stalled clock, e.g. /clock under sim time) before the
    runner's watchdog sends zero and reports CLOCK."""
    pair_tolerance: float = 0.05
    """For a model that encodes a camera frame and joints together: the joint sample used with a
    frame is the one nearest in stamp, at most this far (s) from it."""
    plan_ahead: int = 0
    """Periods the plan starts ahead of the observation. 1: from the model's prediction of the
    next step under the command the robot holds now, for a loop whose command takes effect a
    period late (sent most of a period after the observation, to a robot or sim that takes it at
    its next control step); the plan's first action is then for the step after this one. 0: from
    the observation itself (a command that acts at once, as in lock step)."""
    goal_tolerance: tuple = ()
    """Goal checker (``arrival.GoalChecker``): the largest distance of each goal joint's position
    from a joint goal (one value: every goal joint's; else one per goal joint) at which the robot
    is at the goal: ARRIVED with the stop instead of a plan. Empty: no checker (plan for ever)."""
    replayed: ReplayedCycles = ReplayedCycles()
    """A replay's recorded cycles to repeat as they went (``replayed``; ``fixed_iterations``
    only); empty for a run that is no replay."""

    @property
    def deadline(self) -> float:
        """The solve budget in effect (s, wall clock)."""
        return self.solve_budget if self.solve_budget > 0 else 0.8 * self.period

    @property
    def fixed_iterations(self) -> bool:
        return self.timing == "fixed_iterations"

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{f.name} must be finite, got {value}")
        if self.period <= 0:
            raise ValueError(f"period must be > 0 s, got {self.period}")
        if self.solve_budget < 0:
            raise ValueError(f"solve_budget must be >= 0 s (0: 0.8 x period), got {self.solve_budget}")
        for name in ("max_observation_age", "clock_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0 s, got {getattr(self, name)}")
        if min(self.hold_timeout, self.max_stamp_lead, self.novelty_threshold, self.pair_tolerance) < 0:
            raise ValueError("hold_timeout, max_stamp_lead, novelty_threshold and pair_tolerance must be >= 0")
        if self.min_iterations < 0:
            raise ValueError(f"min_iterations must be >= 0, got {self.min_iterations}")
        if any(not (math.isfinite(t) and t > 0) for t in self.goal_tolerance):
            raise ValueError(f"goal_tolerance must hold values > 0, got {list(self.goal_tolerance)}")
        if self.plan_ahead not in (0, 1):
            raise ValueError(f"plan_ahead must be 0 or 1 (periods), got {self.plan_ahead}")
        if self.on_stale not in ON_STALE_CHOICES:
            raise ValueError(f"on_stale must be one of {list(ON_STALE_CHOICES)}, got {self.on_stale!r}")
        if self.timing not in TIMING_CHOICES:
            raise ValueError(f"timing must be one of {list(TIMING_CHOICES)}, got {self.timing!r}")
        self.replayed.validate(self.fixed_iterations)


@dataclass
class CycleResult:
    """What one cycle decided. ``actions`` [N, A] are the commands from now on (row 0 is
    ``command``): the whole plan when planned, the previous plan's remainder on FALLBACK, else
    one row; the loop's final guard puts them in robot units. ``path`` [N+1, 2] is the model's
    predicted positions along ``actions`` (None without ``model.position``); ``plan`` is the
    plan solved this cycle (None when none was solved)."""

    status: Status
    message: str = ""
    actions: Optional[np.ndarray] = None
    path: Optional[np.ndarray] = None
    plan: Optional[Plan] = None
    solve_time: float = 0.0
    iterations: int = 0
    syncs: int = 0
    start_samples: int = 0
    cost: float = math.nan
    residual: float = math.nan
    observation_age: float = math.inf
    deadline_missed: bool = False
    warm_started: bool = False
    goal_distance: float = math.nan
    novelty: float = math.nan
    """Novelty of the observation against the model's training data (training spreads)."""
    goal_novelty: float = math.nan
    command_delay: float = math.nan
    """Wall seconds from the cycle's start to its command (set by whoever publishes it)."""
    stop: bool = False
    """The command is the robot's stop: exactly zero in robot units, whatever the card's bounds."""
    time: float = math.nan
    """The cycle's time (s, caller's clock); NaN for the watchdog's results."""
    command: Optional[np.ndarray] = None
    """What is sent: row 0 of ``actions`` in robot units (set by the loop's final guard)."""
    awaiting_clock: bool = False
    """CLOCK before the clock has ever moved since control began: the zero goes out as for any
    stalled clock, but nothing was commanded yet, so it weighs as a warning (a simulator's /clock
    still starting, not a clock that died under a moving robot)."""

    @property
    def severity(self) -> str:
        """"error", "warn" or "ok": the status's weight (``Status.severity``), a warning while
        ``awaiting_clock``."""
        return "warn" if self.awaiting_clock else self.status.severity

    @classmethod
    def planned(cls, solved: Plan, status: Status, **fields: Any) -> "CycleResult":
        """A result that sends the ``solved`` plan's actions, with its counts, cost and residual."""
        return cls(status, actions=solved.actions.detach().cpu().numpy().astype(np.float64),
                   solve_time=solved.solve_time, iterations=solved.iterations, syncs=solved.syncs,
                   start_samples=solved.start_samples, cost=solved.cost,
                   residual=solved.dynamics_residual, **fields)


@dataclass
class Job:
    """A cycle that can plan: its time, observation and goal, and when it started (wall)."""

    now: float
    observation: Sample
    goal: Sample
    started: float
    held: np.ndarray
    """The command the robot holds as the cycle begins (model units): where ``plan_ahead``
    starts the plan, fixed here so that a FALLBACK sent before the solve begins (a replayed late
    cycle) cannot move it."""


@dataclass
class Outcome:
    """What ``solve`` produced: a plan, a NOVEL or ERROR result instead, and the novelties."""

    plan: Optional[Plan] = None
    result: Optional[CycleResult] = None
    warm_started: bool = False
    goal_distance: float = math.nan
    novelty: float = math.nan
    goal_novelty: float = math.nan

    def annotate(self, result: CycleResult) -> None:
        """Give ``result`` what the solve measured besides the plan."""
        result.warm_started = self.warm_started
        result.goal_distance, result.novelty = self.goal_distance, self.novelty
        result.goal_novelty = self.goal_novelty


class ControlLoop:
    """Receding-horizon control around one world model and one planner (see module docstring)."""

    MARGIN = 0.1
    """Fraction of the solve budget kept free for the final rollout's jitter and publishing."""

    def __init__(self, model, planner, config: ControlConfig):
        config.validate()
        self.model, self.planner, self.config = model, planner, config
        self.card = card_for(model)
        # Inside the loop actions are in the model's box [low, high]; the final guard maps them
        # to the card's robot units and clips planned ones to its bounds. The stop (``_zero``)
        # is exactly zero in robot units, even where the bounds exclude it (a bag whose commands
        # never stopped the robot: their lowest speed is not a stop). ``safe_zero`` is the stop
        # in the model's box (clipped into it), as the warm start's previous action.
        self.low = model.action_low.detach().cpu().numpy().astype(np.float64)
        self.high = model.action_high.detach().cpu().numpy().astype(np.float64)
        # The clip of every command: a card's float32-rounded bound (a model trained before
        # action_bounds kept decimals) as the robot's decimal, never past it.
        self.command_low = np.array([decimal_bound(v, upper=False) for v in self.card.actions.low])
        self.command_high = np.array([decimal_bound(v, upper=True) for v in self.card.actions.high])
        self.robot_stop = np.zeros_like(self.command_low)
        self.safe_zero = np.clip(self.card.to_model(self.robot_stop, self.low, self.high), self.low, self.high)
        self.image_size = int(getattr(model, "image_size", 0))
        self.joint_dim = int(getattr(model, "joint_dim", 0))
        self.pairs_joints = self.card.pairs_joints
        self.image_frames = int(getattr(model, "image_frames", 1))
        # What an observation is, for a STALE reason that names the input that stopped.
        self._observed = "camera frame" if self.card.image is not None else "joint_states"
        self.novelty = novelty_for(model)
        self._lock = threading.Lock()
        self._inbox = ObservationInbox(lambda: self.config, self.pairs_joints, self.image_frames)
        self._goal: Optional[Sample] = None
        self.goal_target = GoalTarget(model, self.card, self.novelty, planner.device, self._goal_failed,
                                      self._joint_limits)
        self.goal_target.check_limit_count()
        self._pending_settings: dict[str, Any] = {}
        self._reset_requested = False
        self._clock_seen = -math.inf
        self._clock_jump: Optional[tuple[float, float]] = None
        self._gaps = CycleGaps()
        self._jumps = JumpsBack()
        self._last_command = self.safe_zero.copy()
        self._last_command_time = -math.inf     # when the last planned command was decided
        self._sent = self.safe_zero.copy()      # the command the robot holds now (model units)
        self._plan: Optional[Plan] = None
        self._plan_time = math.nan
        self._halted = threading.Event()
        self.goal_checker = (GoalChecker(self.card, model, config.goal_tolerance)
                             if config.goal_tolerance else None)
        """``goal_tolerance``'s checker (None: none)."""

    @property
    def out_of_order(self) -> int:
        """Observations dropped because a newer one (by stamp) had already arrived."""
        return self._inbox.out_of_order

    # -- inbox: called from any thread ------------------------------------------------------

    def observe(self, observation: Mapping[str, np.ndarray], stamp: float,
                received: Optional[float] = None, newest: Optional[float] = None) -> None:
        """The newest observation ("image" uint8 [S, S, 3] RGB and/or "joints" [J]), stamped in s
        (its oldest measurement: what its age is); ``received``: the clock when it arrived (checks
        the stamp is not in the future); ``newest``: a merged joint sample's newest joint's stamp,
        by which a camera + joints model pairs it with a frame (default: ``stamp``)."""
        with self._lock:
            if received is not None:
                self._note_clock(received)
            self._inbox.add(observation, stamp, received, newest)

    def reject_observation(self, reason: str, stamp: float, received: Optional[float] = None,
                           joints: bool = False) -> None:
        """The newest observation could not be used (bad encoding, size...): ERROR until a good one.
        One older than the observation held is dropped, like an older good one. ``joints``: it
        was a joint_states message; for a camera + joints model the frames that find no joints
        to pair with are then refused for this reason too (not STALE between refusals)."""
        with self._lock:
            if received is not None:
                self._note_clock(received)
            self._inbox.refuse(reason, stamp, received, joints)

    def set_goal(self, observation: Mapping[str, np.ndarray]) -> None:
        """A goal given as an observation; ``model.encode_goal`` encodes it at the next step.
        For a model of the last K frames, a goal image is K copies of itself: a goal at rest."""
        observation = dict(observation)
        if self.image_frames > 1 and "image" in observation and np.ndim(observation["image"]) == 3:
            observation["image"] = np.repeat(np.asarray(observation["image"])[None], self.image_frames, axis=0)
        with self._lock:
            self._goal = Sample(observation)

    def set_goal_latent(self, latent) -> None:
        """A goal given directly as a latent [D]."""
        z = torch.as_tensor(np.asarray(latent, dtype=np.float32)).reshape(-1)
        if z.numel() != int(self.model.latent_dim) or not bool(torch.isfinite(z).all()):
            raise ValueError(f"goal latent must be {int(self.model.latent_dim)} finite values, "
                             f"got {z.tolist()}")
        with self._lock:
            self._goal = Sample({"latent": z.numpy()})

    def reject_goal(self, reason: str) -> None:
        """The newest goal could not be used: ERROR until a good one arrives."""
        with self._lock:
            self._goal = Sample(None, error=reason)

    def _goal_failed(self, goal: Sample, reason: str) -> None:
        """``goal`` could not be made ready (``GoalTarget``): refused while it stands, so that it
        is not encoded again every cycle."""
        with self._lock:
            if self._goal is goal:
                self._goal = Sample(None, error=reason)

    def check_planner_settings(self, **changes: Any) -> None:
        """Raise ValueError with the reason if ``planner.configure(**changes)``, after the
        changes requested before it, would fail."""
        with self._lock:
            self._check_planner_settings(changes)

    def request_planner_settings(self, **changes: Any) -> None:
        """Planner settings to apply at the start of the next cycle (validated now)."""
        with self._lock:
            self._check_planner_settings(changes)
            self._pending_settings.update(changes)

    def _check_planner_settings(self, changes: dict[str, Any]) -> None:
        names = {f.name for f in dataclasses.fields(self.planner.settings)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"planner {self.planner.name!r} has no setting {', '.join(unknown)} "
                             f"(its settings: {', '.join(sorted(names))})")
        self.planner.validated(**{**self._pending_settings, **changes})

    def update_config(self, **changes: Any) -> None:
        """Change ``ControlConfig`` fields (validated); they apply from the next cycle."""
        config = dataclasses.replace(self.config, **changes)
        config.validate()
        self.config = config

    def reset(self) -> None:
        """Forget the warm start and rewind the planner's random stream, before the next cycle."""
        with self._lock:
            self._reset_requested = True
            self._gaps.clear()
            self._jumps.clear()

    def halt(self) -> None:
        """A solve in progress ends at its planner's next iteration, and any until ``resume``
        returns its initial plan: whoever stops the loop need not wait for a long plan."""
        self._halted.set()

    def resume(self) -> None:
        """Solves plan to their budget again (after ``halt``)."""
        self._halted.clear()

    # -- the cycle ------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Small solves before the first cycle, so that it does not pay for torch's lazy set-up:
        towards a latent goal and, for a model that takes joint goals, a joint goal (another
        path, through its ``decode_state``: a first cycle towards a joint goal took a second)."""
        z0 = torch.zeros(int(self.model.latent_dim), device=self.planner.device)
        joint_goal = None
        if self.card.goal_joint_input is not None and decodes_joints(self.model):
            with torch.no_grad():
                joint_goal = decode_joints(self.model, (z0 + 0.1)[None])[0]
        self.planner.warm_up(z0, z0 + 0.1, joint_goal)

    def idle(self, message: str = "inactive") -> CycleResult:
        """The result to publish while not controlling: zero command, INACTIVE."""
        self._last_command_time = -math.inf
        return self._finish(self._zero(Status.INACTIVE, message), math.nan, math.nan)

    def step(self, now: float) -> CycleResult:
        """One whole cycle at time ``now`` (s, caller's clock) in the calling thread."""
        self.note_clock(now)
        job = self.prepare(now)
        if isinstance(job, CycleResult):
            return job
        deadline = None if self.config.fixed_iterations else job.started + self.config.deadline
        result = self.conclude(job, self.solve(job, deadline))
        result.deadline_missed = deadline is not None and time.perf_counter() > deadline
        result.command_delay = time.perf_counter() - job.started
        return result

    def note_clock(self, now: float) -> None:
        """The clock read ``now`` for a cycle, noted when it is read: a jump back is judged
        against what was seen before this reading, so a cycle that starts late, after
        observations received since have moved the clock on, is no jump back."""
        with self._lock:
            self._note_clock(now)

    def prepare(self, now: float) -> "Job | CycleResult":
        """Phase 1: inputs and their checks; a ``Job`` to solve, or the cycle's result. ``now``
        was noted (``note_clock``) when it was read."""
        started = time.perf_counter()
        failed: Optional[Exception] = None
        with self._lock:
            reset, self._reset_requested = self._reset_requested, False
        try:
            if reset:
                self._forget_plan()
                self.planner.reset()
        except Exception as exc:  # noqa: BLE001 -- report, never crash
            failed = exc
        with self._lock:
            # Taken and applied under the lock that requests are checked under: a request checked
            # between the two was judged without the settings being applied, accepted, then
            # failed in the node's post-set callback (a parameter race that ended the node: an audit).
            changes, self._pending_settings = self._pending_settings, {}
            try:
                if changes and failed is None:
                    self.planner.configure(**changes)
            except Exception as exc:  # noqa: BLE001 -- settings were validated; report, never crash
                failed = exc
            sample = self._inbox.current(now) if failed is not None else None
        if failed is not None:
            age = now - sample.stamp if sample is not None else math.inf
            return self._finish(self._zero(Status.ERROR, f"{type(failed).__name__}: {failed}"), now, age)
        checked = self._check_inputs(now)
        if isinstance(checked, CycleResult):
            return checked
        sample, goal = checked
        age = now - sample.stamp
        with self._lock:
            ahead = self._inbox.refuse_joints_ahead(now) if self._inbox.recent.pairs_joints else ""
            recent, refused = self._inbox.recent.snapshot(), self._inbox.joints_refused
        if ahead:
            return self._finish(self._zero(Status.ERROR, f"observation refused: {ahead}"), now, age)
        config, inputs = self.config, self._inbox.recent
        terms = (recent, config.pair_tolerance, self.card.period or config.period, config.max_observation_age)
        completed = inputs.complete(sample, *terms)
        # A frame no joint sample has reached yet: an earlier fresh one that has its pair (not
        # with refused joints: no falling back to frames paired with the joints before them).
        if completed.error and inputs.pairs_joints and not refused:
            with self._lock:
                earlier = self._inbox.earlier(sample, now)
            completed = inputs.complete_first(earlier, *terms) or completed
        sample = completed
        if sample.error and refused:
            return self._finish(self._zero(Status.ERROR, f"observation refused: {refused} ({sample.error})"),
                                now, age)
        if sample.error:
            return self._finish(self._stale(sample.error, now), now, age)
        return Job(now, sample, goal, started, self._sent.copy())

    def busy(self, now: float, reason: str) -> CycleResult:
        """A cycle while the planner is still on an earlier cycle's solve (``reason``): the
        inputs are checked as every cycle checks them (a dead sensor, a clock jump or a refused
        goal sends zero), else the latest plan's action for now, FALLBACK. Settings and resets
        wait for the next cycle that plans. ``now``: as for ``prepare``. A cycle whose inputs
        stop it says that the planner was busy too (a replay must not adopt the late plan there)."""
        checked = self._check_inputs(now)
        if isinstance(checked, CycleResult):
            checked.message = f"{checked.message}; {reason}"
            return checked
        sample, _ = checked
        return self.fallback(now, reason, now - sample.stamp)

    def _check_inputs(self, now: float) -> "tuple[Sample, Sample] | CycleResult":
        """The clock, the newest observation and the goal at ``now``: (observation, goal) when
        a plan may use them, else the cycle's result (zero or hold, non-OK)."""
        with self._lock:
            jump, self._clock_jump = self._clock_jump, None
            sample, goal = self._inbox.current(now), self._goal
            apart = self._gaps.note(now, self.config.period)
            wavering = self._jumps.note(jump is not None)
        age = now - sample.stamp if sample is not None else math.inf
        if wavering is not None:
            return self._finish(self._zero(Status.CLOCK, wavering), now, age)
        if jump is not None:
            return self._finish(self._zero(Status.CLOCK, (
                f"clock jumped back from {jump[0]:.3f} s to {jump[1]:.3f} s: observations and "
                "warm start cleared")), now, age)
        if apart is not None:
            return self._finish(self._zero(Status.CLOCK, apart), now, age)
        if sample is None:
            return self._finish(self._stale("no observation yet", now), now, age)
        config = self.config
        old = now - sample.aged_from(config.max_stamp_lead)
        if sample.error and old <= config.max_observation_age:     # a refusal stands while fresh
            return self._finish(self._zero(Status.ERROR, f"observation refused: {sample.error}"), now, age)
        if not sample.error and age < -config.max_stamp_lead:
            reason = (f"stamp {sample.stamp:.3f} s is {-age:.3f} s ahead of the clock "
                      f"(max_stamp_lead {config.max_stamp_lead:g} s){lead_hint(age)}")
            with self._lock:
                self._inbox.refused_at_cycle(sample, reason)
            return self._finish(self._zero(Status.ERROR, f"observation refused: {reason}"), now, age)
        if old > config.max_observation_age:
            refused = f"; it was refused: {sample.error}" if sample.error else ""
            return self._finish(self._stale(
                f"newest observation ({self._observed}) is {old:.3f} s old (max_observation_age "
                f"{config.max_observation_age:g} s){refused}{time_base_hint(age)}", now), now, age)
        if goal is None:
            return self._finish(self._stale(reasons.NO_GOAL, now), now, age)
        if goal.error:
            return self._finish(self._zero(Status.ERROR, f"goal refused: {goal.error}"), now, age)
        return sample, goal

    def solve(self, job: Job, deadline: Optional[float], adopt: bool = True) -> Outcome:
        """Phase 2: encode and plan, finishing by ``deadline`` (perf_counter s; None: run the
        iteration cap). The plan becomes the warm start unless ``adopt`` is False (``adopt``
        it later). Safe to run on a worker thread; never raises."""
        try:
            target = self.goal_target
            z_goal, joint_goal = target.ready(job.goal, job.observation)
            batch = model_batch(self.model, job.observation.value, self.planner.device)
            z = encode(self.model, batch)
            outcome = Outcome(goal_distance=target.distance(z, z_goal, joint_goal),
                              goal_novelty=target.novelty_score)
            if self.novelty is not None:
                outcome.novelty = self.novelty.score(batch, z)
            threshold = self.config.novelty_threshold
            novel = [(value, what) for value, what in ((outcome.novelty, "observation"),
                                                       (outcome.goal_novelty, "goal"))
                     if threshold > 0 and value > threshold]      # NaN (no statistics): never
            if novel:
                value, what = novel[0]
                outcome.result = self._zero(Status.NOVEL, (
                    f"{what} unlike the model's training data: novelty {novelty_text(value)} > "
                    f"novelty_threshold {threshold:g}" + (target.furthest_note if what == "goal" else "")))
                return outcome
            if threshold > 0 and target.out_of_range_note:
                outcome.result = self._zero(Status.NOVEL, f"goal unlike the model's training data: "
                                                          f"{target.out_of_range_note}")
                return outcome
            if self.goal_checker is not None:
                arrived = self.goal_checker.check(job.goal.value.get("joints"),
                                                   job.observation.value.get("joints"), z)
                if arrived:
                    outcome.result = self._zero(Status.ARRIVED, arrived)
                    return outcome
            warm = self._warm_start(job.now)
            outcome.warm_started = warm is not None
            if deadline is None:
                budget = Budget(stop=self._halted.is_set)
            else:
                left = deadline - time.perf_counter() - self.MARGIN * self.config.deadline
                budget = Budget(max_seconds=max(left, 1e-6),  # out of time: the initial plan
                                stop=self._halted.is_set)
            goal = {} if joint_goal is None else {"joint_goal": joint_goal}   # only planners that take one
            plan = self.planner.plan(self._plan_start(z, job.held), z_goal, warm, budget, **goal)
            if adopt:   # on time or late, the freshest solution warm-starts the next cycle
                self.adopt(plan, job.now)
            outcome.plan = plan
        except GoalRefused as exc:     # said as every later cycle of that goal says it
            outcome = Outcome(result=self._zero(Status.ERROR, str(exc)))
        except Exception as exc:  # noqa: BLE001 -- a user's model may raise anything: report it
            outcome = Outcome(result=self._zero(Status.ERROR, f"{type(exc).__name__}: {exc}"))
        return outcome

    def conclude(self, job: Job, outcome: Outcome) -> CycleResult:
        """Phase 3: the cycle's result from the solve's outcome."""
        age = job.now - job.observation.stamp
        if outcome.result is not None:
            result = outcome.result
        else:
            plan = outcome.plan
            result = CycleResult.planned(plan, Status.OK, plan=plan, path=self._positions(plan.states))
            if plan.iterations < self.config.min_iterations:
                cap = getattr(self.planner.settings, "iterations", math.inf)
                why = (f"planner.iterations is {cap}" if plan.iterations >= cap
                       else "stopped early" if self._halted.is_set() else "the budget ran out")
                result.status = Status.TRUNCATED
                result.message = (f"planning cut short: {plan.iterations} iteration(s) in "
                                  f"{plan.solve_time:.3f} s (min_iterations "
                                  f"{self.config.min_iterations}); {why}"
                                  + ("" if outcome.warm_started else "; no warm start"))
            self._last_command_time = job.now
        outcome.annotate(result)
        return self._finish(result, job.now, age)

    def adopt(self, plan: Plan, made_at: float) -> None:
        """``plan``, made for the cycle at ``made_at``, is the warm start from now on (and what
        a FALLBACK sends)."""
        with self._lock:
            if made_at <= self._clock_seen:   # not from before the clock jumped back
                self._plan, self._plan_time = plan, made_at

    def late(self, job: Job, reason: str) -> CycleResult:
        """The cycle's solve missed the deadline: the previous plan's action for now, FALLBACK."""
        return self.fallback(job.now, reason, job.now - job.observation.stamp)

    def late_plan(self, job: Job, outcome: Outcome, late_by: float) -> CycleResult:
        """A report of the plan a late cycle finished ``late_by`` wall seconds after its deadline
        (it warm-starts the next cycle): its counts, cost and the command it would have given.
        Nothing in the loop changes: the cycle itself was reported as FALLBACK."""
        plan = outcome.plan
        if plan is None:
            result = outcome.result or self._zero(Status.ERROR, "no plan")
            result = dataclasses.replace(result, status=Status.FALLBACK,
                                         message=f"late plan failed: {result.message}")
        else:
            result = CycleResult.planned(plan, Status.FALLBACK, message=(
                f"the late plan of this cycle, done {late_by:.3f} s after its deadline: it "
                "warm-starts the next cycle"))
        outcome.annotate(result)
        result.deadline_missed = True
        self._guarded(result, job.now, job.now - job.observation.stamp)
        return result

    def fallback(self, now: float, reason: str, age: float = math.nan) -> CycleResult:
        """No fresh plan for this cycle (``reason``): the latest plan's action for ``now``, while
        that plan is at most ``max_observation_age`` + one period old (a late cycle's previous
        plan is a period old); after that zero: a planner that stays busy (a slow model, a
        starved CPU, a peer's costly settings) must not drive the robot open loop along a plan of
        what it saw seconds ago, however fresh the observations that it cannot use."""
        with self._lock:
            plan, plan_time = self._plan, self._plan_time
        previous = self._remaining(plan, plan_time, now)
        oldest = self.config.max_observation_age + self.config.period
        if previous is not None and now - plan_time > oldest:
            result = self._zero(Status.FALLBACK, (
                f"{reason}; the previous plan is {now - plan_time:.3f} s old (more than "
                f"max_observation_age + one period, {oldest:g} s)"))
        elif previous is None:
            result = self._zero(Status.FALLBACK, f"{reason}; no previous plan left")
        else:
            actions, states = previous
            result = CycleResult(Status.FALLBACK, f"{reason}; sent the previous plan's action",
                                actions=actions, path=self._positions(states))
            self._last_command_time = now
        result.deadline_missed = True
        return self._finish(result, now, age)

    def overdue(self, result: CycleResult, now: float, why: str) -> CycleResult:
        """The stop in place of ``result``, the cycle at ``now`` whose command is overdue
        (``why``): the process was held up (stopped, starved of CPU), and the command was
        decided from the world as it was then. The cycle's counts and its own status and reason
        stay in the report (``reasons.overdue``)."""
        self._last_command_time = -math.inf     # nor may on_stale "hold" send it later
        stopped = dataclasses.replace(
            result, status=Status.FALLBACK, actions=None, path=None, stop=True, deadline_missed=True,
            message=reasons.overdue(why, result.status.name, result.message))
        return self._finish(stopped, now, result.observation_age)

    def clock_stalled(self, wall_seconds: float, started: bool = False, sim_time: bool = True,
                      in_cycle: bool = False, wavering: bool = False, crawled: float = math.nan,
                      ran_on: float = math.nan) -> CycleResult:
        """What the runner's watchdog sends when no cycle ran for ``wall_seconds``: zero, CLOCK.
        ``started``: no cycle has run since control began (the clock has not moved yet: a sim's
        /clock not yet discovered, or not published). ``sim_time``: the clock is a published
        one; on the wall clock only the caller can have stopped ticking. ``in_cycle``: a cycle
        began and has not ended (in real time, where a cycle ends by its deadline).
        ``wavering``: the clock went back since the last cycle, by less than a jump.
        ``crawled``: how far the clock went forward since the last cycle (s; NaN: it stood).
        ``ran_on``: how far the clock went since the cycle in progress began (s; NaN: none)."""
        self._last_command_time = -math.inf
        with self._lock:
            jump = self._clock_jump      # noted by the inputs' arrival times; the next cycle reports it too
        awaiting = False
        if in_cycle and self.config.fixed_iterations:
            why = (f"a fixed_iterations cycle is still planning, and the clock went {ran_on:.2f} s on "
                   "meanwhile: its iterations take longer than the clock waits (planner.iterations "
                   "too many; on sim time, a simulator that stopped waiting for the controller)")
        elif in_cycle:
            why = ("a cycle began and has not ended: its thread is held up (this process starved of "
                   "CPU, or a model call that does not return)")
            if sim_time and not crawled > 0:    # an audit's paused simulator read as a held-up thread
                why += ", or the clock stopped meanwhile (a paused simulator, /clock no longer published)"
        elif jump is not None:
            why = (f"the clock jumped back from {jump[0]:.3f} s to {jump[1]:.3f} s (a sim reset, a bag "
                   "loop, two clocks) and no cycle has run since")
        elif wavering:
            why = ("the clock changes but does not advance: it went back since the last cycle (two "
                   "/clock publishers, or a bag looping over less than a period)")
        elif crawled > 0:
            why = (f"the clock advances, but only {crawled:.6f} s since the last cycle: slower than a "
                   "simulator is followed (a simulator far below real time, or a clock that creeps)")
        elif not sim_time:
            why = ("the control timer did not fire: the caller's thread was held up (a callback "
                   "that ran long, e.g. decoding a huge compressed image, or no CPU for it)")
        elif started:
            why = ("since control began: the clock has not moved yet (no /clock received? it comes "
                   "once a clock publisher is discovered)")
            awaiting = True
        else:
            why = ("the clock stopped (a paused simulator, or /clock no longer published), or the "
                   "caller's thread was held up")
        result = self._zero(Status.CLOCK, (f"{reasons.WATCHDOG} {wall_seconds:.2f} s of wall time "
                                           f"(clock_timeout {self.config.clock_timeout:g} s): {why}"))
        result.awaiting_clock = awaiting
        return self._finish(result, math.nan, math.inf)

    # -- helpers ----------------------------------------------------------------------------

    def _joint_limits(self) -> Optional[Mapping[str, Any]]:
        """The planner's costs.joint_limits as they stand (None: a planner without them)."""
        costs = getattr(getattr(self.planner, "settings", None), "costs", None) or {}
        return costs.get("joint_limits")

    def _note_clock(self, t: float) -> None:
        """Detect the clock jumping back (a sim reset, a bag loop): clear what came before.
        Called with the lock held."""
        if t < self._clock_seen - max(self.config.period, 1e-3):
            self._clock_jump = (self._clock_seen, t)
            self._inbox.clear()
            self._plan, self._plan_time = None, math.nan
            # on_stale "hold" measures from the last planned command: a time after the jump
            self._last_command_time = -math.inf
            self._clock_seen = t
        self._clock_seen = max(self._clock_seen, t)

    def _forget_plan(self) -> None:
        with self._lock:
            self._plan, self._plan_time = None, math.nan
        if self.goal_checker is not None:
            self.goal_checker.forget()

    def _warm_start(self, now: float):
        """The previous plan shifted by the whole periods elapsed since it was made, or None."""
        with self._lock:
            plan, plan_time = self._plan, self._plan_time
        k = self._periods_since(plan, plan_time, now)
        if k is None or k >= plan.horizon:
            return None
        return plan.shifted(k)

    def _plan_start(self, z: torch.Tensor, held: np.ndarray) -> torch.Tensor:
        """Where the plan starts: the observation's latent, or (``plan_ahead``) the model's next
        state under the command the robot holds (``held``) until this cycle's command takes effect."""
        if not self.config.plan_ahead:
            return z
        held = torch.as_tensor(held, dtype=z.dtype, device=z.device)
        with torch.no_grad():
            return model_step(self.model, z[None], held[None])[0]

    def _remaining(self, plan, plan_time, now: float):
        """A plan's actions [N, A] from ``now`` on and their states [N+1, D], or None."""
        k = self._periods_since(plan, plan_time, now)
        if k is None or k >= plan.horizon:
            return None
        return (plan.actions[k:].detach().cpu().numpy().astype(np.float64), plan.states[k:])

    def _periods_since(self, plan, plan_time, now: float) -> Optional[int]:
        if plan is None:
            return None
        return max(0, round((now - plan_time) / self.config.period))

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

    def _stale(self, message: str, now: float) -> CycleResult:
        held = now - self._last_command_time
        if self.config.on_stale == "hold" and held <= self.config.hold_timeout:
            return CycleResult(Status.STALE, f"{message}: hold", actions=self._last_command[None].copy())
        if self.config.on_stale == "hold" and math.isfinite(held):
            message += f": held {held:.2f} s > hold_timeout {self.config.hold_timeout:g} s"
        return self._zero(Status.STALE, message)

    def _zero(self, status: Status, message: str) -> CycleResult:
        return CycleResult(status, f"{message}: zero", actions=self.safe_zero[None].copy(), stop=True)

    def _finish(self, result: CycleResult, now: float, age: float) -> CycleResult:
        """``result`` through the final guard (``_guarded``), its command remembered as the one
        the robot holds from now on (and, unless STALE's hold, as the last planned one)."""
        held = self._guarded(result, now, age)
        if result.status != Status.STALE:
            self._last_command = held.copy()
        self._sent = held.copy()
        return result

    def _guarded(self, result: CycleResult, now: float, age: float) -> np.ndarray:
        """The final guard: whatever happened above, the command is finite, a planned one within
        the bounds and a stop exactly zero; the actions go from the model's box to robot units
        (the card's bounds). Returns the command in the model's box."""
        result.observation_age, result.time = age, now
        actions = (self.safe_zero[None].copy() if result.actions is None else
                   np.asarray(result.actions, dtype=np.float64).reshape(-1, self.low.size))
        if not np.isfinite(actions[0]).all():
            result.status = Status.ERROR
            result.message = f"non-finite command {actions[0].tolist()} replaced by zero"
            actions, result.path, result.stop = self.safe_zero[None].copy(), None, True
        actions = np.clip(np.nan_to_num(actions, nan=0.0, posinf=0.0, neginf=0.0), self.low, self.high)
        if result.stop:
            actions = self.safe_zero[None].copy()
            result.actions = self.robot_stop[None].copy()
        else:
            result.actions = self._robot_actions(actions)
        if not np.isfinite(result.actions).all():      # what is sent, in robot units, checked too
            result.status, result.stop, result.path = Status.ERROR, True, None
            result.message = f"non-finite command in robot units {result.actions[0].tolist()} replaced by zero"
            actions, result.actions = self.safe_zero[None].copy(), self.robot_stop[None].copy()
        result.command = result.actions[0].copy()
        return actions[0]

    def _robot_actions(self, actions: np.ndarray) -> np.ndarray:
        """Actions [N, A] inside the model's box -> robot units inside the card's bounds."""
        return np.clip(self.card.to_robot(actions, self.low, self.high), self.command_low, self.command_high)

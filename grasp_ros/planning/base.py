"""The planner interface: ``plan(z0, z_goal, warm_start, budget, joint_goal=None) -> Plan``.

Symbols used in every planner: ``H`` horizon, ``C`` parallel chains or samples, ``D`` latent
dimension, ``A`` action dimension, ``J`` joints. Every planner:

* optimises a_0..a_{H-1} for the same task cost (``costs.Cost``, built from the settings
  ``running_weight``, ``action_weight`` and ``costs``): reach the goal latent, or joint positions
  through the model's ``decode_state``, or both;
* keeps actions inside the model's bounds at every iterate;
* stops at an iteration cap or a wall-clock budget (anytime) and returns the best plan so far,
  judged by the true serial rollout;
* is deterministic under its seed (``reset`` rewinds the seed);
* raises ``ValueError`` on bad input and ``PlanningError`` instead of returning a non-finite plan;
* reports each new best plan to ``observer``, if one is set (benchmarks: time to success).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from .costs import Cost, CostContext, Goal, check_spec
from .rollout import rollout


class PlanningError(RuntimeError):
    """The optimisation produced no finite plan (e.g. the model returned NaN)."""


@dataclass(frozen=True)
class Budget:
    """When to stop: after ``max_iterations`` or ``max_seconds`` of wall clock, whichever first.
    0 iterations: no optimisation step, the initial plans ranked by their rollouts."""

    max_iterations: Optional[int] = None
    max_seconds: Optional[float] = None
    stop: Optional[Callable[[], bool]] = dataclasses.field(default=None, compare=False)
    """Asked between iterations (from the planning thread): True ends the plan there, as a spent
    budget would (a node shutting down need not wait for a long plan)."""

    def __post_init__(self):
        if self.max_iterations is not None and self.max_iterations < 0:
            raise ValueError(f"max_iterations must be >= 0, got {self.max_iterations}")
        if self.max_seconds is not None and not (self.max_seconds > 0):
            raise ValueError(f"max_seconds must be > 0, got {self.max_seconds}")


@dataclass
class WarmStart:
    """A previous solution shifted in time: actions [H, A] and (GRASP) virtual states [H+1, D];
    ``goal`` [D] is the goal the states head for (None: unknown); ``previous_action`` [A] the
    action executed just before the first of ``actions`` (None: unknown), for the smoothness cost."""

    actions: torch.Tensor
    states: Optional[torch.Tensor] = None
    goal: Optional[torch.Tensor] = None
    previous_action: Optional[torch.Tensor] = None

    def retargeted(self, goal: torch.Tensor) -> "WarmStart":
        """The same start towards another goal [D]: state t of H moves by t / H of the goal's
        displacement, so the route's beginning stays and its end reaches the new goal."""
        if self.states is None or self.goal is None or torch.equal(self.goal, goal.to(self.goal)):
            return self
        H = self.states.shape[0] - 1
        frac = torch.arange(H + 1, dtype=self.states.dtype, device=self.states.device).div(H)
        moved = self.states + frac[:, None] * (goal.to(self.states) - self.goal)
        return WarmStart(self.actions, moved, goal.to(self.states), self.previous_action)


@dataclass
class Plan:
    """A planner's answer.

    ``states`` is the true serial rollout of ``actions`` from z0 (what the model predicts will
    happen); ``virtual_states`` are GRASP's optimised states (None for other planners).
    ``model_calls`` counts one-step predictions evaluated (forward), summed over the batch.
    """

    actions: torch.Tensor            # [H, A]
    states: torch.Tensor             # [H+1, D]
    cost: float
    iterations: int
    solve_time: float
    model_calls: int
    planner: str
    virtual_states: Optional[torch.Tensor] = None   # [H+1, D]
    dynamics_residual: float = math.nan
    trace: Optional[list] = None
    goal: Optional[torch.Tensor] = None               # [D], the goal latent it was planned for
    syncs: int = 0                                    # GRASP's full-rollout syncs run
    start_samples: int = 0                            # GRASP's start samples drawn

    @property
    def horizon(self) -> int:
        return int(self.actions.shape[0])

    def shifted(self, steps: int = 1) -> WarmStart:
        """The warm start for the next cycle after executing ``steps`` actions.

        Actions move ``steps`` earlier and the tail is zero (hold still); virtual states move the
        same way and the tail repeats the last state (the goal), so chains resume where they were.
        The last action executed, ``actions[steps - 1]``, becomes ``previous_action``.
        """
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        H = self.horizon
        k = min(steps, H)
        actions = torch.zeros_like(self.actions)
        actions[: H - k] = self.actions[k:]
        states = self.virtual_states if self.virtual_states is not None else self.states
        previous = self.actions[k - 1].clone() if k > 0 else None
        return WarmStart(actions, _shift(states, k), self.goal, previous)


def _shift(sequence: torch.Tensor, k: int) -> torch.Tensor:
    """Rows moved ``k`` earlier, the tail repeating the last row."""
    shifted = sequence[-1:].repeat(sequence.shape[0], *([1] * (sequence.dim() - 1)))
    n = max(sequence.shape[0] - k, 0)
    shifted[:n] = sequence[sequence.shape[0] - n:]
    return shifted


class Deadline:
    """Iteration cap and wall-clock limit, checked once per iteration.

    On a GPU the clock must measure finished work, not queued kernel launches: every reading
    of it first waits for the device. Such a wait stalls the queue, so there (``lazy``) a
    reading also says how many more iterations surely fit, half of those that would at the
    slowest recent pace, and those pass unchecked: a plan waits for the device a few times
    (about log2 of its iterations), not every iteration, and keeps its limit as long as the
    iterations do not slow down more than 2x within a plan."""

    def __init__(self, budget: Optional[Budget], default_iterations: int,
                 device: Optional[torch.device] = None, recent: Optional[deque] = None,
                 lazy: Optional[bool] = None):
        budget = budget or Budget()
        self.max_iterations = default_iterations if budget.max_iterations is None else budget.max_iterations
        self.max_seconds = budget.max_seconds
        self._stop = budget.stop or (lambda: False)
        on_gpu = device is not None and torch.device(device).type == "cuda"
        self._synchronize = (lambda: torch.cuda.synchronize(device)) if on_gpu else (lambda: None)
        self._lazy = on_gpu if lazy is None else bool(lazy)
        self._last_check: Optional[float] = None
        self._last_iteration = 0
        self._trusted_until = 0     # iterations below this fit without a reading (lazy)
        # Iteration times; a planner passes its own deque so that they carry across its plan
        # calls: the first iteration of a call is then judged by the last calls' ones too.
        self._steps: deque[float] = deque(maxlen=5) if recent is None else recent
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        self._synchronize()
        return time.perf_counter() - self.start

    def done(self, iteration: int, reserve: float = 0.0) -> bool:
        """Stop before ``iteration``? ``reserve``: seconds still needed after the last iteration.

        Called once per iteration, it also times the iterations: one is started only when the
        slowest of the last few would still fit, so the limit is not overrun by the iteration
        in flight (on a shared CPU their wall time varies)."""
        if iteration >= self.max_iterations or self._stop():
            return True
        if self.max_seconds is None or iteration < self._trusted_until:
            return False
        now = self.elapsed()
        if self._last_check is not None:   # the mean of the iterations since the last reading
            self._steps.append((now - self._last_check) / max(1, iteration - self._last_iteration))
        self._last_check, self._last_iteration = now, iteration
        slowest = self.slowest_iteration
        stop = now + reserve + slowest >= self.max_seconds
        if stop and iteration == 0 and self._steps and now + reserve < self.max_seconds:
            # The slowest remembered iteration (of earlier calls) blocks this call's first: forget
            # it, so one slow spell cannot keep every later call from planning; a planner whose
            # iterations never fit tries one again once it has forgotten them all.
            self._steps.remove(max(self._steps))
        if self._lazy and not stop and slowest > 0:
            fit = int((self.max_seconds - now - reserve) / slowest) - 1   # after this one
            self._trusted_until = iteration + 1 + max(0, fit // 2)
        return stop

    def left(self) -> float:
        """Seconds until the wall-clock limit (inf without one)."""
        return math.inf if self.max_seconds is None else self.max_seconds - self.elapsed()

    @property
    def slowest_iteration(self) -> float:
        """The slowest of the recent iterations (s; 0 before any)."""
        return max(self._steps, default=0.0)

    def allows(self, seconds: float) -> bool:
        """Is there time for ``seconds`` more work (always, without a wall-clock limit)? Work
        other than iterations follows, so the next iteration is checked again."""
        self._trusted_until = 0
        if self._stop():
            return False
        return self.max_seconds is None or self.elapsed() + seconds < self.max_seconds

    @contextlib.contextmanager
    def paused(self):
        """The time spent inside is not the planner's: it counts neither in ``elapsed`` nor
        against the limit, nor in the iteration times that ``done`` keeps."""
        self._synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._synchronize()
            self.start += time.perf_counter() - start


def finite_flags(*tensors: Optional[torch.Tensor]) -> torch.Tensor:
    """Per tensor, are all its values finite (a missing one: yes)? One bool tensor on the
    device of the first, so that one read answers for all."""
    present = [t for t in tensors if t is not None]
    device = present[0].device if present else None
    return torch.stack([torch.isfinite(t).all().to(device) if t is not None
                        else torch.ones((), dtype=torch.bool, device=device) for t in tensors])


def all_finite(*tensors: Optional[torch.Tensor]) -> bool:
    """Are all values of all (present) tensors finite? One read back from the device."""
    return bool(finite_flags(*tensors).all())


class Best:
    """The lowest-cost action sequence seen so far (true rollout cost), per planner call.

    Kept on the planner's device: an offer reads nothing back to the host (on a GPU, no
    synchronisation per iteration or sync), unless an ``on_new`` observer must be told of a new
    best. ``cost`` (a float, inf until a finite offer) reads it back once."""

    def __init__(self, on_new: Optional[Callable[[torch.Tensor], None]] = None):
        self.actions, self.states, self.virtual_states = None, None, None
        self._cost: Optional[torch.Tensor] = None    # 0-dim, inf until a finite offer
        self.on_new = on_new   # called with the actions [H, A] of each new best

    @property
    def cost(self) -> float:
        return math.inf if self._cost is None else float(self._cost)

    def offer(self, actions: torch.Tensor, states: torch.Tensor, costs: torch.Tensor,
              virtual_states: Optional[torch.Tensor] = None) -> None:
        """actions [C, H, A], states [C, H+1, D], costs [C]: keep the best finite candidate (the
        first of equals; a later one only when strictly better)."""
        finite = torch.isfinite(costs) & torch.isfinite(states).flatten(1).all(1)
        costs = torch.where(finite, costs.detach(), torch.full_like(costs, math.inf))
        i = torch.argmin(costs).view(1)
        cost = costs.index_select(0, i)[0]
        if self._cost is None:
            better = torch.isfinite(cost)
            self._cost = cost
            self.actions, self.states = self._pick(actions, i), self._pick(states, i)
            if virtual_states is not None:
                self.virtual_states = self._pick(virtual_states, i)
        else:
            better = cost < self._cost
            self._cost = torch.where(better, cost, self._cost)
            self.actions = torch.where(better, self._pick(actions, i), self.actions)
            self.states = torch.where(better, self._pick(states, i), self.states)
            if virtual_states is not None:
                fresh = self._pick(virtual_states, i)
                self.virtual_states = fresh if self.virtual_states is None else torch.where(
                    better, fresh, self.virtual_states)
        if self.on_new is not None and bool(better):
            self.on_new(self.actions)

    @staticmethod
    def _pick(batch: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return batch.detach().index_select(0, i)[0]


MAX_BATCH_STEPS = 1 << 20
"""Model steps one batched call of a plan may take, a step through which a gradient flows
counted ``GRADIENT_STEP_COST`` times (``Planner._largest_batched_call``). Such a call cannot stop
half-way (the budget and ``halt`` are checked between calls) and its memory grows with it: the
cap, far above a control cycle's calls, keeps a peer allowed to set planner knobs from making
one plan take minutes and tens of GB (measurements: ``docs/notes/planner_experiments.md``)."""
GRADIENT_STEP_COST = 8
"""A step through which a gradient flows, in forward steps (its memory); the adjoint's Jacobians
add 2 x latent size per step (their D cotangents)."""


@dataclass
class PlannerSettings:
    """Settings every planner has."""

    iterations: int = 100
    """Iteration cap when the budget names none (0: the initial plans, ranked, as a plan whose
    wall-clock budget ran out at once)."""
    running_weight: float = 0.0
    """Weight of the mean running goal distance in the task cost (terminal distance has weight 1),
    for the latent and the joint goal alike; GRASP's loss has it too (``grasp.py``)."""
    action_weight: float = 0.0
    """Weight of the mean squared action (effort) in the task cost. A little of it makes the
    actions that do not matter for the goal small instead of arbitrary, so a receding-horizon
    loop's first action points at the goal instead of dithering near it."""
    tolerance: float = 0.0
    """Stop early once the best plan's task cost is at or below this (0 disables)."""
    sample_dynamics: bool = False
    """Stochastic models: sample one realisation per step instead of using the mean."""
    costs: dict = dataclasses.field(default_factory=dict)
    """The cost's other terms, a plain dict: weights of the latent and joint goal, smoothness,
    joint limits, user terms (``costs.check_spec``; {} keeps the defaults)."""

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            value, kind = getattr(self, f.name), f.type if isinstance(f.type, type) else eval(f.type)
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
                object.__setattr__(self, f.name, value)
            if type(value) is not kind:
                raise ValueError(f"{type(self).__name__}.{f.name} must be {kind.__name__}, got {value!r}")
            if kind is float and not math.isfinite(value):
                raise ValueError(f"{type(self).__name__}.{f.name} must be finite, got {value}")
        if self.iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {self.iterations}")
        if self.running_weight < 0 or self.action_weight < 0 or self.tolerance < 0:
            raise ValueError("running_weight, action_weight and tolerance must be >= 0")
        object.__setattr__(self, "costs", check_spec(self.costs))

    def changed(self, **changes: Any) -> "PlannerSettings":
        """A validated copy with ``changes``; ValueError names unknown settings or a bad value."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"{type(self).__name__} has no settings {sorted(unknown)}")
        settings = dataclasses.replace(self, **changes)
        settings.validate()
        return settings


class Planner:
    """Base class: input checks, budget, best-so-far, seeding. Subclasses implement ``_solve``."""

    name = "planner"
    Settings = PlannerSettings
    observer: Optional[Callable[[torch.Tensor, float], None]] = None
    """Called with each new best plan's actions [H, A] (not to be modified) and the planner's
    seconds so far in this ``plan`` call. The observer's own time is not the planner's: it is
    left out of ``solve_time`` and the budget. None (default) costs nothing."""

    def __init__(self, model, horizon: int, settings: Optional[PlannerSettings] = None,
                 seed: int = 0, device: Optional[torch.device | str] = None,
                 allow_python: bool = False):
        if int(horizon) < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        self.model, self.horizon, self.seed = model, int(horizon), int(seed)
        self.device = torch.device(device) if device is not None else model.action_low.device
        self.low = torch.as_tensor(model.action_low, dtype=torch.float32).to(self.device)
        self.high = torch.as_tensor(model.action_high, dtype=torch.float32).to(self.device)
        if self.low.shape != self.high.shape or not bool((self.low <= self.high).all()):
            raise ValueError(f"action bounds need low <= high, got {self.low.tolist()} / {self.high.tolist()}")
        self.latent_dim, self.action_dim = int(model.latent_dim), int(model.action_dim)
        self.allow_python = bool(allow_python)   # user cost terms (package.module:function) may load
        self._context = CostContext(model)        # each plan call sets its own
        self.settings = settings if settings is not None else self.Settings()
        self.configure()
        self.generator = torch.Generator(device=self.device)
        self._iteration_seconds: deque[float] = deque(maxlen=8)   # recent, across plan calls
        self.reset()

    def validated(self, **changes: Any) -> PlannerSettings:
        """The settings with ``changes``, validated, also against the horizon and the model;
        ValueError says why not."""
        return self._prepared(changes)[0]

    def _prepared(self, changes: dict[str, Any]) -> tuple[PlannerSettings, Cost]:
        """``validated``'s settings and their cost: a cost the model cannot serve (a joint goal
        scaled per joint of a model that decodes no joints) fails here, where a change is asked
        for, not at the cycle that would apply it (an audit: accepted, then an ERROR cycle and
        the old cost on, the parameter reading back the new value)."""
        settings = self.settings.changed(**changes)
        steps, call = self._largest_batched_call(settings)
        if steps > MAX_BATCH_STEPS:
            raise ValueError(f"{self.name}: {call} would take {steps} model steps in one batched "
                             f"call (a step with a gradient counted {GRADIENT_STEP_COST}), more "
                             f"than {MAX_BATCH_STEPS} (planning.base.MAX_BATCH_STEPS); fewer samples, "
                             "chains or sync_search, or a shorter horizon")
        return settings, Cost(settings.costs, settings.running_weight, settings.action_weight,
                              self.model, self.allow_python, self.device)

    def _largest_batched_call(self, settings) -> tuple[int, str]:
        """The costliest batched model call of a plan with ``settings``: its steps (see
        ``MAX_BATCH_STEPS``) and what it is."""
        return self.horizon, f"a rollout of horizon {self.horizon}"

    def configure(self, **changes: Any) -> None:
        """Change settings (validated); they apply from the next ``plan`` call."""
        self.settings, self.cost = self._prepared(changes)

    def warm_up(self, z0: torch.Tensor, z_goal: torch.Tensor,
                joint_goal: Optional[torch.Tensor] = None) -> None:
        """Plan twice, cold and then warm-started, before the first control cycle, so that it does
        not pay for torch's lazy set-up on any path (with ``joint_goal``, once more towards it: a
        goal given as joints takes another path, through the model's ``decode_state``, whose
        first call took a second); then rewind the random stream."""
        budget = Budget(max_iterations=self.WARM_UP_ITERATIONS)
        with self._warming_up():
            first = self.plan(z0, z_goal, budget=budget)
            if joint_goal is not None and self.cost.goal_problem(Goal(None, joint_goal)) is None:
                self.plan(z0, None, budget=budget, joint_goal=joint_goal)
            self._forget_timings()          # the cold plans' times say nothing of the next ones
            self.plan(z0, z_goal, warm_start=first.shifted(1), budget=budget)
        self.reset()

    WARM_UP_ITERATIONS = 2
    """Iterations of each warm-up plan: a fixed few, whatever the settings (configure runs them,
    with no deadline)."""

    def _warming_up(self):
        """A context in which the warm-up's few iterations reach every path a plan takes."""
        return contextlib.nullcontext()

    def _forget_timings(self) -> None:
        """Drop what the planner measured of its own speed."""
        self._iteration_seconds.clear()

    def reset(self, seed: Optional[int] = None) -> None:
        """Rewind the random stream (optionally to a new seed): the next plan equals a fresh planner's."""
        if seed is not None:
            self.seed = int(seed)
        self.generator.manual_seed(self.seed)

    def plan(self, z0: torch.Tensor, z_goal: Optional[torch.Tensor],
             warm_start: Optional[WarmStart] = None, budget: Optional[Budget] = None,
             joint_goal: Optional[torch.Tensor] = None) -> Plan:
        """A plan from z0 [D] to the goal latent ``z_goal`` [D] and/or the joint positions
        ``joint_goal`` [J] (through the model's ``decode_state``; ``z_goal`` may then be None)."""
        z0 = self._check_latent(z0, "z0")
        goal = Goal(None if z_goal is None else self._check_latent(z_goal, "z_goal"),
                    None if joint_goal is None else self._check_vector(joint_goal, "joint_goal"))
        for ok, what in zip(finite_flags(z0, goal.latent, goal.joints).tolist(),
                            ("z0", "z_goal", "joint_goal")):   # one read back for the three
            if not ok:
                raise ValueError(f"{what} contains NaN or Inf")
        self.cost.check_goal(goal, z0)
        warm = self._check_warm_start(warm_start)
        self._context = CostContext(self.model, None if warm is None else warm.previous_action)
        deadline = Deadline(budget, self.settings.iterations, self.device, self._iteration_seconds)
        with torch.inference_mode(False), torch.enable_grad():  # callers may be in inference mode
            plan = self._solve(z0, goal, warm, deadline)
        plan.solve_time = deadline.elapsed()
        plan.goal = goal.latent
        if not all_finite(plan.actions, plan.states):
            raise PlanningError(f"{self.name}: no finite plan found (the model produced NaN/Inf)")
        return plan

    # -- helpers for subclasses -------------------------------------------------------------

    def _solve(self, z0, goal, warm: Optional[WarmStart], deadline: Deadline) -> Plan:
        raise NotImplementedError

    def _best(self, deadline: Deadline) -> Best:
        """The best-so-far of one plan call, reporting to ``observer`` on the planner's clock."""
        if self.observer is None:
            return Best()
        observer = self.observer

        def report(actions: torch.Tensor) -> None:
            seconds = deadline.elapsed()
            with deadline.paused():
                observer(actions, seconds)
        return Best(report)

    def _clamp(self, actions: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(actions, self.high), self.low)

    def _rollout(self, z0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return rollout(self.model, z0, actions, self.settings.sample_dynamics, self.generator)

    def _cost(self, states: torch.Tensor, goal: Goal, actions: torch.Tensor) -> torch.Tensor:
        """Task cost [...] of trajectories [..., H+1, D] under actions [..., H, A]."""
        return self.cost(states, actions, goal, self._context)

    def _finish(self, best: Best, z0, goal, iterations: int, model_calls: int, **extra) -> Plan:
        cost = best.cost
        if not math.isfinite(cost):
            raise PlanningError(f"{self.name}: no finite plan found (the model produced NaN/Inf)")
        return Plan(actions=best.actions, states=best.states, cost=cost,
                    iterations=iterations, solve_time=0.0, model_calls=model_calls,
                    planner=self.name, virtual_states=best.virtual_states, **extra)

    def _converged(self, best: Best) -> bool:
        return self.settings.tolerance > 0 and best.cost <= self.settings.tolerance   # 0: off

    def _check_latent(self, z: torch.Tensor, what: str) -> torch.Tensor:
        z = self._check_vector(z, what)
        if z.shape != (self.latent_dim,):
            raise ValueError(f"{what} must have shape ({self.latent_dim},), got {tuple(z.shape)}")
        return z

    def _check_vector(self, z, what: str) -> torch.Tensor:
        z = torch.as_tensor(z)
        if z.dim() == 2 and z.shape[0] == 1:
            z = z[0]
        if z.dim() != 1:
            raise ValueError(f"{what} must be a vector, got shape {tuple(z.shape)}")
        return z.to(device=self.device, dtype=torch.float32).clone()  # a normal tensor, even from inference mode

    def _check_warm_start(self, warm: Optional[WarmStart]) -> Optional[WarmStart]:
        if warm is None:
            return None
        H, A, D = self.horizon, self.action_dim, self.latent_dim
        if tuple(warm.actions.shape) != (H, A):
            raise ValueError(f"warm-start actions must have shape ({H}, {A}), got {tuple(warm.actions.shape)}")
        states = warm.states
        if states is not None and tuple(states.shape) != (H + 1, D):
            raise ValueError(f"warm-start states must have shape ({H + 1}, {D}), got {tuple(states.shape)}")
        previous = warm.previous_action
        if previous is not None and tuple(previous.shape) != (A,):
            raise ValueError(f"warm-start previous_action must have shape ({A},), got {tuple(previous.shape)}")
        to = dict(device=self.device, dtype=torch.float32)
        actions = warm.actions.to(**to)
        states = None if states is None else states.to(**to)
        previous = None if previous is None else previous.to(**to)
        # One read back from the device for all three.
        finite_actions, finite_states, finite_previous = finite_flags(actions, states, previous).tolist()
        if not (finite_actions and finite_states):
            return None  # a poisoned warm start is dropped, not propagated
        if not finite_previous:
            previous = None   # unknown rather than poisoned
        return WarmStart(self._clamp(actions), states, None if warm.goal is None else warm.goal.to(**to),
                         previous)

"""Which recorded inputs each replayed cycle must see, and the clock that drives it.

A cycle takes the inputs that had arrived when it began. The bag tells when that was, in its
receive times (one clock for every topic): the /clock message that reached the cycle's time (the
controller's timer fires on it), else the cycle's PlanDiagnostics less its ``command_delay``.
Every input received before that boundary, and after the previous cycle's, is delivered before
the cycle. The recorded ``observation_age`` then pins it: the observation the cycle used
(stamped ``time - observation_age``) must come before the boundary, and a newer one after it
(the controller takes the newest by stamp); the boundary moves to satisfy both when the receive
times alone would not (the recorder and the controller receive a message at slightly different
moments). A cycle recorded before the controller's first observation (infinite age) gets none.

The controller's timer fires on a grid of its period from its activation. The replay activates it
at ``activation_clock``, one period before a grid whose points lie at or before every cycle's
time, so that each published cycle time fires the timer exactly once (cycles recorded late on
their grid, e.g. by a coarse /clock, fire too).

A window (``start``/``end``, seconds from the first cycle) replays part of a bag: its first cycle
also gets the last goal before it and the observations of the ``LOOKBACK_S`` before it, but not
the warm start the controller had then, so its first cycles can differ.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ..control import Status
from ..control import reasons
from ..timebase import NS, SAME_TIME_NS
from .bag import COUNTS, GOALS, Cycle, Input, Recording

PLANNED = (Status.OK, Status.TRUNCATED)
"""The statuses of a cycle that reports a plan of its own."""
LOOKBACK_S = 5.0


@dataclass
class ReplayCycle:
    """One cycle to replay: deliver ``inputs`` (and ``iterations``), then publish ``clock``."""

    index: int                 # the cycle's index in Recording.cycles
    cycle: Cycle
    clock: int                 # ns
    inputs: list[Input]
    iterations: Optional[int]  # planner.iterations for this cycle (None: leave as set)
    syncs: Optional[int] = None  # planner.max_syncs for this cycle (None: no cap)
    start_samples: Optional[int] = None  # planner.max_start_samples for this cycle (None: no cap)
    fallback: str = ""
    """How the recorded cycle was a FALLBACK, to repeat it: "late" (its plan came late: plan
    the late plan's counts, send the previous plan's action), "busy" (the planner was still on a
    late plan: no planning; a STALE, ERROR or CLOCK cycle then too), "unknown" (the bag has no
    late plan report for it), or ""."""
    overdue: bool = False
    """The recorded cycle's command was overdue (``reasons.OVERDUE``: the stop went out
    instead): the cycle as ``fallback`` says, then the stop."""

    def replayed_as(self, kind: str) -> bool:
        """Whether the controller must repeat this cycle as one of ``kind``
        (``control.replayed``: "late", "busy", "overdue")."""
        return self.overdue if kind == "overdue" else self.fallback == kind


def replay_cycles(recording: Recording, observed: Sequence[str], iterations: str = "parameter",
                  start: float = 0.0, end: float = math.inf) -> list[ReplayCycle]:
    """The recorded cycles in the window, in order, as the replay runs them. ``observed``: the input roles whose
    message is the cycle's observation (the camera for a camera model, else joints);
    ``iterations`` "recorded" sets each cycle's recorded iteration count and repeats its late
    plans (``ReplayCycle.fallback``); "parameter" plans every cycle, in time."""
    cycles = recording.cycles
    first = cycles[0].time
    chosen = [k for k, c in enumerate(cycles) if start * NS <= c.time - first <= end * NS]
    if not chosen:
        raise ValueError(f"no recorded cycle between {start:g} s and {end:g} s after the first "
                         f"(the bag's cycles span {(cycles[-1].time - first) / NS:.3f} s)")
    bounds = boundaries(recording, observed)
    received = np.asarray([i.received for i in recording.inputs], dtype=np.int64)
    counts = recorded_iterations(cycles) if iterations == "recorded" else [None] * len(cycles)
    late = {c.time: c for c in recording.late_plans or ()}
    steps = []
    for k in chosen:
        low = bounds[k - 1] if k > 0 else np.iinfo(np.int64).min
        first_in, end_in = np.searchsorted(received, [low, bounds[k]])      # inputs in receive order
        take = recording.inputs[first_in:end_in]
        if k == chosen[0] and k > 0:
            take = _lead_in(recording, low, cycles[k].time) + take
        # A cycle's sync and start sample counts, where it reports a plan of its own: recorded
        # under a budget, its last syncs may have been skipped and fewer samples drawn.
        step = ReplayCycle(k, cycles[k], clock_value(recording, cycles[k].time), take, counts[k])
        # The counts (COUNTS) of the plan the cycle reports, its own or its late plan's: recorded
        # under a budget, its last syncs may have been skipped and fewer samples drawn.
        planned = cycles[k] if iterations == "recorded" and planned_itself(cycles[k]) else None
        if iterations == "recorded":
            step.fallback = fallback_kind(cycles[k], late.get(cycles[k].time))   # stamped alike
            step.overdue = reasons.OVERDUE in cycles[k].status_text
            if step.fallback == "late":
                planned = late[cycles[k].time]
                step.iterations = planned.iterations
        for name in COUNTS if planned is not None else ():
            setattr(step, name, getattr(planned, name))
        steps.append(step)
    return steps


def fallback_kind(cycle: Cycle, late_plan) -> str:
    """``ReplayCycle.fallback`` of a recorded cycle. A busy cycle whose inputs stopped it (STALE,
    ERROR, CLOCK while the planner was still on a late plan) says so in its text, and is busy
    too: the late plan must not take over there."""
    if cycle.status == Status.FALLBACK and late_plan is not None:
        return "late"
    if reasons.BUSY in cycle.status_text:
        return "busy"
    if planned_itself(cycle):
        return ""
    return "unknown" if cycle.status == Status.FALLBACK else ""


def planned_itself(cycle: Cycle) -> bool:
    """Whether a recorded cycle reports a plan of its own: OK or TRUNCATED, or one of those whose
    command was overdue and sent as the stop (which keeps the plan's counts)."""
    was = reasons.overdue_status(cycle.status_text)
    return cycle.status in PLANNED or was in {status.name for status in PLANNED}


def recorded_iterations(cycles: Sequence[Cycle]) -> list[int]:
    """Per cycle, the iteration count to replay it with: its recorded count where it reports a
    plan of its own (OK or TRUNCATED, 0 included: its budget ran out at once), else the median
    of those counts (a cycle that plans nothing; a late cycle gets its late plan's count)."""
    counts = [c.iterations for c in cycles if planned_itself(c)]
    typical = int(np.median(counts)) if counts else 1
    return [c.iterations if planned_itself(c) else typical for c in cycles]


def boundaries(recording: Recording, observed: Sequence[str]) -> np.ndarray:
    """Per cycle, the receive time (ns) before which its inputs arrived (see the module doc)."""
    cycles, clock = recording.cycles, recording.clock
    bounds = []
    for cycle in cycles:
        delay = cycle.command_delay if math.isfinite(cycle.command_delay) else 0.0
        bound = cycle.received - int(round(max(delay, 0.0) * NS))
        reached = int(np.searchsorted(clock[:, 1], cycle.time - SAME_TIME_NS))   # /clock never goes back
        if reached < len(clock):
            bound = min(bound, int(clock[reached, 0]))
        bounds.append(bound)
    bounds = np.maximum.accumulate(np.asarray(bounds, dtype=np.int64))
    views = [i for i in recording.inputs if i.role in observed]           # in receive order
    received = np.asarray([i.received for i in views], dtype=np.int64)
    stamps = np.asarray([i.stamp for i in views], dtype=np.int64)
    by_stamp = np.argsort(stamps, kind="stable")
    sorted_stamps = stamps[by_stamp]
    newest = np.maximum.accumulate(stamps) if len(stamps) else stamps    # newest stamp so far
    observed_yet = False
    for k, cycle in enumerate(cycles):
        if not len(views):
            break
        if cycle.observation_age == math.inf and not observed_yet:
            # It had no observation yet (a controller started with the recorder, whose first
            # frame came before the controller's subscription did): none before it.
            bounds[:k + 1] = np.minimum(bounds[:k + 1], received[0])
            continue
        if not math.isfinite(cycle.observation_age):
            continue
        observed_yet = True
        used = cycle.time - int(round(cycle.observation_age * NS))
        lo, hi = np.searchsorted(sorted_stamps, [used - SAME_TIME_NS, used + SAME_TIME_NS + 1])
        same = int(by_stamp[lo:hi].max()) if hi > lo else -1              # the last received
        if same >= 0 and bounds[k] <= received[same]:
            bounds[k] = received[same] + 1
        # The first newer one received after it: the cycle would have taken that one instead.
        limit = used + SAME_TIME_NS
        if same < 0:
            after = int(np.searchsorted(newest, limit, side="right"))
        else:
            after = same + 1
            while after < len(views) and stamps[after] <= limit:
                after += 1
        if after < len(views) and bounds[k] > received[after]:
            bounds[k] = received[after]
    return np.maximum.accumulate(bounds)


def clock_value(recording: Recording, time: int) -> int:
    """The recorded /clock value nearest a cycle's time (its exact nanoseconds), else the time."""
    values = recording.clock[:, 1]
    at = int(np.searchsorted(values, time))
    near = [int(values[i]) for i in (at - 1, at) if 0 <= i < len(values)]
    nearest = min(near, key=lambda v: abs(v - time), default=time)
    return nearest if abs(nearest - time) <= SAME_TIME_NS else time


def activation_clock(times: Sequence[int], period: float) -> int:
    """The clock (ns) at which to activate the controller so that its timer, of ``period`` s,
    fires once at each of ``times`` (increasing, ns). ValueError when no timer phase fires at
    every cycle (the period is not the recorded one), or the first cycle comes too early.

    A timer's cycles come at or after its grid points, late when its executor was busy or /clock
    moves in coarse steps. Two consecutive cycles less than a period apart need a grid point
    between them: the grid's phase (its points modulo the period) must lie in the arc from the
    earlier's phase to the later's. The phase chosen lies in as many of those arcs as any cycle's
    phase does (all, for a recording of one timer)."""
    period_ns = int(round(period * NS))
    t = np.asarray(times, dtype=np.int64)
    before, after = t[:-1], t[1:]
    close = (after - before) < period_ns
    # Phases that would miss a close pair: the circular arc (after's phase, before's phase].
    lo, hi = after[close] % period_ns, before[close] % period_ns
    wrapped = lo >= hi
    lows = np.concatenate([lo[~wrapped], lo[wrapped], np.full(int(wrapped.sum()), -1)])
    highs = np.concatenate([hi[~wrapped], np.full(int(wrapped.sum()), period_ns), hi[wrapped]])
    candidates = np.unique(t % period_ns)
    misses = (np.searchsorted(np.sort(lows), candidates, side="left")
              - np.searchsorted(np.sort(highs), candidates, side="left"))
    if misses.min() > 0:
        raise ValueError(f"the recorded cycles do not fit one control timer of period {period:g} s "
                         f"(at best {int(misses.min())} would not run): replay with the recorded "
                         "control_rate_hz, and a window (--start/--end) without a controller restart")
    phase = int(candidates[int(np.argmin(misses))])
    t0 = int(t[0])
    first = t0 - (t0 - phase) % period_ns                        # the grid point of the first cycle
    if first < period_ns:
        raise ValueError(f"the first cycle ({t0 / NS:.3f} s) comes less than one period "
                         f"({period:g} s) after time 0: the controller's timer cannot reach it")
    # One period before the first firing: a jump of several periods that lands on the grid
    # would fire the timer twice (rcl catches up to a due time equal to the clock).
    return first - period_ns


def _lead_in(recording: Recording, before: int, time: int) -> list[Input]:
    """For a window's first cycle: the last message of each goal topic received before
    ``before``, and the observations of the LOOKBACK_S before ``time``, in receive order."""
    earlier = [i for i in recording.inputs if i.received < before]
    goals = {i.role: i for i in earlier if i.role in GOALS}
    recent = [i for i in earlier if i.role not in GOALS and i.stamp >= time - LOOKBACK_S * NS]
    return sorted(list(goals.values()) + recent, key=lambda i: i.received)

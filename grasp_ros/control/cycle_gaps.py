"""Whether the control cycles come far further apart than the control period (ROS-free).

A command stands until the next cycle's. The model predicts one control period of it, so cycles
that come several periods apart leave every command standing several model steps: a ``/clock``
published in steps coarser than the period (a bag played with ``--clock 2`` under a 10 Hz
controller; an audit: 0.45 s steps, 17 OK cycles whose commands each stood 4.5 steps), or a clock
that runs on while this process is starved. One long gap is a hiccup, which the overdue rule and
the watchdog already judge; ``RUN`` gaps among the last ``WINDOW`` intervals are the clock's pace,
and stop the robot until they have left the window. Not ``RUN`` in a row: a clock stepping 0.85 s
then 0.15 s each second (an adversarial audit) had every other interval short, and its moving
commands stood 8.5 model steps each, OK.

Only the cycles' own times are read, so a replay, which repeats each cycle at its recorded time,
repeats the verdict.
"""
from __future__ import annotations

import collections
import math
from typing import Optional

GAP_PERIODS = 2.5
"""A cycle more than this many control periods after the one before it follows a gap (one
skipped tick, two periods, is not one)."""
RUN = 3
"""Gaps among the last ``WINDOW`` intervals that make the clock's pace, not a hiccup."""
WINDOW = 2 * RUN
"""Intervals between cycles remembered."""


class CycleGaps:
    """The intervals between the cycles since the last ``clear`` (the last ``WINDOW``)."""

    def __init__(self):
        self._last = math.nan
        self._gaps: collections.deque = collections.deque(maxlen=WINDOW)   # the longer ones

    def clear(self) -> None:
        """Control (re)starts: what came before says nothing of the pace now."""
        self._last = math.nan
        self._gaps.clear()

    def note(self, now: float, period: float) -> Optional[str]:
        """A cycle at ``now`` (s, the loop's clock); the reason to stop while ``RUN`` or more of
        the last ``WINDOW`` intervals were gaps, else None. A clock that went back starts afresh."""
        last, self._last = self._last, now
        if not math.isfinite(last) or now < last:
            self._gaps.clear()
            return None
        self._gaps.append(now - last if now - last > GAP_PERIODS * period else None)
        gaps = [g for g in self._gaps if g is not None]
        if len(gaps) < RUN:
            return None
        longest = max(gaps)
        return (f"{len(gaps)} of the last {len(self._gaps)} cycles came more than {GAP_PERIODS:g} control "
                f"periods after the one before (up to {longest:.3f} s, {longest / period:.1f} periods): "
                "each command stands that long, longer than the step the model predicts. A /clock that "
                "advances in steps coarser than the control period (publish it at control_rate_hz or "
                "faster), or a clock that runs on while this process is starved")


class JumpsBack:
    """Whether the clock went back before each of the last ``WINDOW`` cycles. One jump is a sim
    reset or a bag loop (CLOCK for that cycle, then control starts afresh); ``RUN - 1`` or more
    in the window is two clocks publishing at once, which had the robot commanded between the
    jumps, OK, as long as they lasted (an adversarial audit: two /clock publishers 0.3 s apart,
    77 moving commands among 78 CLOCK stops in 6 s). Counted by cycles, not wall time, so a
    replay repeats the verdict."""

    def __init__(self):
        self._jumped: collections.deque = collections.deque(maxlen=WINDOW)

    def clear(self) -> None:
        self._jumped.clear()

    def note(self, jumped: bool) -> Optional[str]:
        """A cycle, after a jump back or not; the reason to stop, or None."""
        self._jumped.append(bool(jumped))
        count = sum(self._jumped)
        if count < RUN - 1:
            return None
        return (f"the clock went back before {count} of the last {len(self._jumped)} cycles: two "
                "/clock publishers (a simulator and a bag played with --clock, two simulators)? "
                "Control waits until it stops going back")

"""Whether the control cycles come far further apart than the control period (ROS-free).

A command stands until the next cycle's. The model predicts one control period of it, so cycles
that come several periods apart leave every command standing several model steps: a ``/clock``
published in steps coarser than the period (a bag played with ``--clock 2`` under a 10 Hz
controller; an audit: 0.45 s steps, 17 OK cycles whose commands each stood 4.5 steps), or a clock
that runs on while this process is starved. One long gap is a hiccup, which the overdue rule and
the watchdog already judge; ``RUN`` gaps in a row are the clock's pace, and stop the robot.

Only the cycles' own times are read, so a replay, which repeats each cycle at its recorded time,
repeats the verdict.
"""
from __future__ import annotations

import math
from typing import Optional

GAP_PERIODS = 2.5
"""A cycle more than this many control periods after the one before it follows a gap (one
skipped tick, two periods, is not one)."""
RUN = 3
"""Gaps in a row that make the clock's pace, not a hiccup."""


class CycleGaps:
    """The times of the cycles so far, since the last ``clear``."""

    def __init__(self):
        self._last = math.nan
        self._run = 0

    def clear(self) -> None:
        """Control (re)starts: what came before says nothing of the pace now."""
        self._last, self._run = math.nan, 0

    def note(self, now: float, period: float) -> Optional[str]:
        """A cycle at ``now`` (s, the loop's clock); the reason to stop when it ends the
        ``RUN``-th gap in a row, else None. A clock that went back starts afresh."""
        last, self._last = self._last, now
        if not math.isfinite(last) or now < last:
            self._run = 0
            return None
        gap = now - last
        self._run = self._run + 1 if gap > GAP_PERIODS * period else 0
        if self._run < RUN:
            return None
        return (f"the last {self._run} cycles came {gap:.3f} s apart ({gap / period:.1f} control periods): "
                "each command stands that long, longer than the step the model predicts. A /clock that "
                "advances in steps coarser than the control period (publish it at control_rate_hz or "
                "faster), or a clock that runs on while this process is starved")

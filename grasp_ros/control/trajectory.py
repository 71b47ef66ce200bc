"""What a joint-trajectory command starts from and how far ahead it runs (ROS-free).

A trajectory's first point is at its cycle's time, so its positions are those measured at that
time and known when the cycle began, not a measurement that came while the cycle planned (the
robot had moved on; after a stall, a new episode may have begun; a glitch the plan never saw
would move the whole trajectory). A stop, which holds the robot where it is, takes each joint's
median of the newest few measurements: a single glitch is never held. And a trajectory moves
for no longer than a FALLBACK would follow a plan (the cycle's ``max_observation_age`` + one
period), then comes to rest: a trajectory controller runs the last trajectory it got to its
end, so a controller that stops (killed, stopped, starved) must not leave seconds of plan
behind it. A stop with no measurement fresh (or plausible) enough to hold holds where the last
trajectory sent takes the joints then (``SentPositions``): a trajectory controller refuses by
default a point without positions, and that reference is where it is driving the robot anyway.
"""
from __future__ import annotations

import collections
import math
import threading
from typing import Optional

import numpy as np

from .inputs import age_origin

SAMPLES_KEPT = 4096
"""Measurements kept at most (4 s of a 1 kHz joint_states; a cycle looks back less than
max_observation_age)."""

STEADY_OF = 3
"""Measurements a stop's hold is the median of: one outlier among them is never held."""


class MeasuredPositions:
    """The command joints' measured positions by stamp (any thread adds, any thread reads)."""

    def __init__(self):
        self._samples: collections.deque = collections.deque(maxlen=SAMPLES_KEPT)
        self._lock = threading.Lock()

    def add(self, positions: np.ndarray, stamp: float, received: float = -math.inf) -> None:
        """``received``: when it arrived (the same clock as ``at``'s ``received_by``; its age
        counts from no later than ``lead`` after that, as an observation's does: ``age_origin``)."""
        with self._lock:
            self._samples.append((float(stamp), np.asarray(positions, dtype=np.float64), float(received)))

    def refuse(self, received: float) -> None:
        """A measurement refused as it arrived at ``received`` (NaN, beyond any position): from
        it until the next good one, no positions. A trajectory of a cycle that began before it
        keeps those measured then (clearing them all had stripped that cycle's positions, and
        each stop after it held none: an adversarial audit)."""
        with self._lock:
            self._samples.append((-math.inf, None, float(received)))

    def drop_after(self, stamp: float) -> None:
        """Forget the measurements stamped after ``stamp`` (a clock that jumped back: they are
        of the run before it)."""
        with self._lock:
            self._samples = collections.deque((s for s in self._samples if s[0] <= stamp),
                                              maxlen=SAMPLES_KEPT)

    def at(self, when: float, max_age: float, lead: float,
           received_by: float = math.inf) -> tuple[Optional[np.ndarray], float]:
        """The newest positions stamped at most ``lead`` after ``when`` and at most ``max_age``
        old then (``age_origin``), of those received by ``received_by``, and their age at
        ``when``; (None, the age of the newest measurement, or NaN without one) when there is
        none such."""
        with self._lock:
            samples = list(self._samples)
        for stamp, positions, received in reversed(samples):
            if positions is None and received <= received_by:     # refused since
                return None, math.nan
            if stamp <= when + lead and received <= received_by:
                age = when - age_origin(stamp, received, lead)
                return (positions, age) if age <= max_age else (None, age)
        measured = [(stamp, received) for stamp, positions, received in samples if positions is not None]
        if not measured:
            return None, math.nan
        stamp, received = measured[-1]
        return None, when - age_origin(stamp, received, lead)

    def steady(self, when: float, max_age: float, lead: float) -> tuple[Optional[np.ndarray], float]:
        """``at`` for a stop's hold: each joint's median over the newest ``STEADY_OF`` measurements
        that ``at`` would take (the newest alone where fewer are that fresh), and the newest's
        age. A run of stops holds where its first one measured, and a position-tracking
        controller drives the robot there: one glitch must not become that place."""
        with self._lock:
            samples = list(self._samples)
        ages = []
        for stamp, positions, received in reversed(samples):
            if positions is None:           # refused: nothing before it is held
                break
            if stamp <= when + lead:
                ages.append((when - age_origin(stamp, received, lead), positions))
        fresh = [(age, positions) for age, positions in ages[:STEADY_OF] if age <= max_age]
        if len(fresh) < STEADY_OF:
            return self.at(when, max_age, lead)
        return np.median(np.stack([positions for _, positions in fresh]), axis=0), fresh[0][0]


class SentPositions:
    """Where the last trajectory sent with positions takes the joints: its stamp (s; None: "start
    on receipt", a stop or a hold, at rest), its points' times from the stamp (s) and positions
    [P, J]. A stop without fresh measurements holds where this puts the joints at the stop: the
    trajectory controller's own reference, which no dead joint_states makes stale."""

    def __init__(self, stamp: Optional[float], times, positions):
        self.stamp = stamp
        self.times = np.asarray(times, dtype=np.float64)
        self.positions = np.asarray(positions, dtype=np.float64).reshape(len(self.times), -1)

    def at(self, when: float) -> np.ndarray:
        """Positions [J] at ``when`` (s): interpolated between the points, the first before the
        stamp, the last after the end (the controller holds it); a hold's own positions."""
        if self.stamp is None:
            return self.positions[0].copy()
        t = when - self.stamp
        return np.array([np.interp(t, self.times, column) for column in self.positions.T])


def trajectory_steps(period: float, max_observation_age: float) -> int:
    """How many of a plan's actions a trajectory carries before it comes to rest: those that
    start within ``max_observation_age`` + one period of its stamp (at least one)."""
    return max(1, int(math.floor((max_observation_age + period) / period + 1e-9)))

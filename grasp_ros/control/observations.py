"""The control loop's inbox of observations (ROS-free): which observation a cycle at ``now``
uses, which arrivals are dropped, and why an input was refused.

* The newest observation by stamp is the cycle's; an older one that arrives late is dropped and
  counted (``out_of_order``), unless it is on another time base (``OTHER_TIME_BASE_S``).
* When the newest is stamped ahead of the clock by more than ``max_stamp_lead`` but not twice as
  much (a sim's /clock that trails its sensors on a busy machine), the cycle uses the newest one
  received in the last ``max_observation_age`` and not stamped ahead (``current``); further
  ahead, the cycle refuses it, and it stays refused once the clock has passed its stamp. A camera
  + joints model's joint samples are refused likewise (``refuse_joints_ahead``).
* A camera + joints model's joint samples and a history model's frames wait beside the
  observations (``inputs.RecentInputs``) to complete the cycle's observation.

Not thread-safe: ``ControlLoop`` calls it with its lock held.
"""
from __future__ import annotations

import collections
import math
from typing import Any, Callable, Mapping, Optional

import numpy as np

from .inputs import RecentInputs, Sample

ARRIVALS_KEPT = 4096
"""Observations kept for ``ObservationInbox.current`` at most (half a second of a 1 kHz
joint_states is 500)."""
OTHER_TIME_BASE_S = 1e6
"""An observation this far (s, 11 days) from the clock was stamped on another time base."""


class ObservationInbox:
    """The observations received, for the cycle to take (module docstring). ``config()``: the
    loop's ``ControlConfig`` as it stands."""

    def __init__(self, config: Callable[[], Any], pairs_joints: bool, image_frames: int):
        self._config = config
        self.recent = RecentInputs(pairs_joints, image_frames)
        self.newest: Optional[Sample] = None
        # (sample, received) of the observations received in the last max_observation_age, the
        # newest last: the cycle's, when the newest is stamped ahead of the clock (``current``).
        self._arrivals: collections.deque = collections.deque(maxlen=ARRIVALS_KEPT)
        self._newest_stamp = -math.inf          # of the accepted observations
        self.joints_refused = ""
        """Why the last joint_states was refused, until a good one."""
        self.out_of_order = 0
        """Observations dropped because a newer one (by stamp) had already arrived."""

    def add(self, observation: Mapping[str, np.ndarray], stamp: float,
            received: Optional[float] = None, newest: Optional[float] = None) -> None:
        """``ControlLoop.observe``'s observation."""
        config = self._config()
        keep = config.max_observation_age + config.pair_tolerance
        if self.recent.keeps_apart(observation):
            self.recent.add(observation, stamp if newest is None else newest, keep, oldest=stamp)
            self.joints_refused = ""
            return
        if self._out_of_order(stamp):
            return
        self._arrived(dict(observation), float(stamp), "", received)
        self.recent.add(observation, stamp, keep)
        # A stamp ahead of the clock is judged at the cycle, when the clock may have caught up
        # (a sim publishes sensors just before /clock reaches their time); as "newest" it counts
        # for no more than the clock allows, so a stamp far in the future cannot hold back the
        # observations that follow it.
        lead = config.max_stamp_lead
        self._newest_stamp = float(stamp if received is None else min(stamp, received + lead))

    def refuse(self, reason: str, stamp: float, received: Optional[float] = None,
               joints: bool = False) -> None:
        """``ControlLoop.reject_observation``'s refusal."""
        if joints and self.recent.pairs_joints:
            self.joints_refused = reason
        if self._out_of_order(stamp):
            return
        self._arrived(None, float(stamp), reason, received)

    def clear(self) -> None:
        """Forget every observation (the clock jumped back)."""
        self.newest, self._newest_stamp = None, -math.inf
        self._arrivals.clear()
        self.recent.clear()
        self.joints_refused = ""

    def current(self, now: float) -> Optional[Sample]:
        """The cycle's observation at ``now``: the newest, or, when the newest is stamped ahead of
        the clock by more than max_stamp_lead but not twice as much (a frame stamped at the next
        tick arrives before the clock does), the newest one received in the last
        max_observation_age and not stamped ahead: what the robot had measured by ``now``.
        Further ahead (a sensor's clock running fast, another time base) the newest stands, and
        the cycle refuses it: a sensor stamping its messages ahead would otherwise be taken for
        fresh that much longer after it died."""
        config = self._config()
        newest, lead = self.newest, config.max_stamp_lead
        if newest is None or not lead < newest.stamp - now <= 2 * lead:
            return newest
        for sample, received in reversed(self._arrivals):
            if sample.stamp - now <= lead and received >= now - config.max_observation_age:
                return sample
        return newest

    def refused_at_cycle(self, sample: Sample, reason: str) -> None:
        """A cycle refused ``sample`` (stamped too far ahead of the clock): refused for good, as a
        refusal on arrival is. Taken up once the clock passed its stamp, the last message of a
        sensor stamping ahead made the only moving commands of its stream, after it had died (an
        adversarial audit: ERROR while it streamed, then 0.5 s of OK cycles)."""
        sample.value, sample.error = None, reason

    def refuse_joints_ahead(self, now: float) -> str:
        """For a camera + joints model, at the cycle: joint samples stamped ahead of the clock by
        more than twice max_stamp_lead are refused, every joint sample kept with them (their
        stamps say nothing of when the joints were measured), and the reason, as a joints-only
        model's observation is; "" when none is. Joints stamped 0.3 s ahead had paired with
        frames 0.3 s younger than them, 58 cycles of 60 OK (an adversarial audit)."""
        lead, newest = self._config().max_stamp_lead, self.recent.newest_joint_stamp()
        if newest is None or newest - now <= 2 * lead:
            return ""
        self.recent.clear_joints()
        self.joints_refused = (f"joint_states: stamp {newest:.3f} s is {newest - now:.3f} s ahead of "
                               f"the clock (max_stamp_lead {lead:g} s){lead_hint(now - newest)}")
        return self.joints_refused

    def earlier(self, sample: Sample, now: float) -> list:
        """The observations stamped before ``sample`` and still fresh at ``now``, newest first:
        a camera + joints model's frames that may pair where ``sample`` does not."""
        config = self._config()
        return [s for s, _ in reversed(self._arrivals)
                if s.value is not None and s.stamp < sample.stamp
                and now - s.aged_from(config.max_stamp_lead) <= config.max_observation_age]

    def _out_of_order(self, stamp: float) -> bool:
        """An observation stamped before the newest is dropped (and counted), unless it is on
        another time base: a sim's first message, stamped 0 and so taken as "now" by a node on
        the wall clock, must not hide the sim-time stamps after it (the cycle would plan from
        it, then call the camera dead, instead of naming use_sim_time)."""
        if not 0 < self._newest_stamp - stamp < OTHER_TIME_BASE_S:
            return False
        self.out_of_order += 1
        return True

    def _arrived(self, value, stamp: float, error: str, received: Optional[float]) -> None:
        """The newest observation (``value``, or None with the ``error`` that refused it)."""
        sample = Sample(value, stamp, error, math.nan if received is None else float(received))
        self.newest = sample
        received = sample.stamp if received is None else float(received)
        self._arrivals.append((sample, received))
        while self._arrivals[0][1] < received - self._config().max_observation_age:
            self._arrivals.popleft()


def lead_hint(age: float) -> str:
    """Why an input's stamp is ``-age`` s ahead of the clock: another time base, or one of
    two clocks off (a sensor's ahead, or this node's behind: a starved process takes /clock
    late, and its fresh inputs then look ahead)."""
    return time_base_hint(age) or ("; the sender's clock runs ahead of this node's, or this node's "
                                   "clock lags (on sim time, a process stopped or starved of CPU takes "
                                   "/clock late)")


def time_base_hint(age: float) -> str:
    """A hint when stamps and the clock are on different time bases: a robot on sim time (from
    0) against a node on the wall clock (1.8e9 s), or the reverse."""
    if not OTHER_TIME_BASE_S <= abs(age) < math.inf:
        return ""
    return ("; the stamps and the clock are on different time bases (sim time against the wall "
            "clock): set use_sim_time as the robot's clock is")

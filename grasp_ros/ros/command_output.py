"""A control cycle's result as the robot's command message, on the node's ``command_interface``.

* forward_command: a Float64MultiArray of the command, in the model's action order;
* twist, twist_stamped: a Twist of the actions named for its fields (``conversions.twist_message``);
* joint_trajectory: a JointTrajectory of the command joints (``joint_names``, else the card's
  action names; actions reordered by name where both name the same joints), from the positions
  measured at the cycle's time, moving for ``trajectory_steps`` of the plan, then at rest
  (``control.trajectory``), within the position limits of cost.joint_limits_low/high.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import JointState
from std_msgs.msg import Header
from trajectory_msgs.msg import JointTrajectory

from ..control import CycleResult, Status, time_base_hint
from ..control.trajectory import MeasuredPositions, SentPositions, trajectory_steps
from ..models.joint_states import FLOAT32_MAX, JointStateMerger
from . import wiring
from .conversions import command_message, seconds, stamp_seconds, trajectory_message, twist_message




class CommandOutput:
    """Sends each result on ``publisher`` as ``values["command_interface"]`` says (module
    docstring). ``now``: the node's clock (s)."""

    def __init__(self, values: dict[str, Any], card, publisher, logger, now: Callable[[], float]):
        self.interface = values["command_interface"]
        self.publisher = publisher
        self.joints = wiring.command_joints(values, card)
        """The joints a trajectory names, in its order (None for the other interfaces)."""
        limits = wiring.trajectory_limits(values, card)
        self._limits = None if limits is None else tuple(np.asarray(b) for b in limits)
        self._order = wiring.command_order(values, card)
        self._action_names = list(card.actions.names)
        self._command_frame = values["command_frame_id"]
        self._logger, self._now = logger, now
        # The command joints' measured positions by stamp (the oldest joint's), for a
        # trajectory's positions; a run of stops holds the first one's.
        self._measured = MeasuredPositions()
        self._measured_joints = None if self.joints is None else JointStateMerger(self.joints, ("position",))
        self._held_positions: Optional[np.ndarray] = None
        self._holds_none = False       # this run of stops holds no positions, whatever comes
        self._held_measured = False    # the held positions are a measurement's (not the last sent)
        self._sent: Optional[SentPositions] = None   # the last trajectory, where it had positions
        self._clock_seen = -math.inf

    def restart(self) -> None:
        """A new run of commands (an activation): the next stop holds the positions measured
        then, not those of a stop before (another controller may have moved the robot since)."""
        self._held_positions, self._holds_none, self._sent = None, False, None

    @property
    def names(self) -> list[str]:
        """What the command carries, in its order."""
        return self.joints or self._action_names

    def note_joint_states(self, msg: JointState, max_age: float, source=None) -> None:
        """A joint_states message from ``source`` (its publisher; ``JointStateMerger``): the
        command joints' positions, for a trajectory's start."""
        if self._measured_joints is None:
            return
        now = self._now()
        try:
            merged = self._measured_joints.update(msg, stamp_seconds(msg.header.stamp) or now,
                                                  latest=now + max_age, source=source, window=max_age)
            if merged is not None:
                positions = np.asarray(merged[0], dtype=np.float64)
                if not np.all(np.abs(positions) <= FLOAT32_MAX):
                    # Finite, but no joint is there (a model in float32 reads it as inf): as a
                    # trajectory's positions, a target of 1e300 (an adversarial audit, OK cycles).
                    named = ", ".join(f"{j}={v:g}" for j, v in zip(self.joints, positions)
                                      if not abs(v) <= FLOAT32_MAX)
                    raise ValueError(f"{named} measured: beyond any position a joint can be at")
                self._measured.add(*merged, received=now)
        except ValueError as exc:
            self._measured.refuse(now)     # trajectories of later cycles carry velocities only
            self._logger.warning(f"trajectory positions: {exc}", throttle_duration_sec=5.0)

    def send(self, result: CycleResult, header: Header, when: float, config) -> None:
        """Publish ``result``'s command stamped ``header``, for the cycle at ``when`` (``config``:
        the loop's). A trajectory's first velocities, which a joint limit may have cut, become
        ``result.command``: what was sent."""
        if self.interface == "joint_trajectory":
            self._note_clock(config)
            actions = result.actions if self._order is None else result.actions[:, self._order]
            novel = result.status == Status.NOVEL and result.novelty > config.novelty_threshold
            trajectory = self._trajectory(actions, header, when, config, novel)
            self.publisher.publish(trajectory)
            sent = np.asarray(trajectory.points[0].velocities, dtype=np.float64)   # in the card's order
            if self._order is None:
                result.command = sent
            else:
                result.command = result.command.copy()
                result.command[self._order] = sent
        elif self.interface in ("twist", "twist_stamped"):
            # A stop is stamped 0, which diff_drive_controller takes as "now": stamped with the
            # cycle's time on another clock than the robot's (a node on sim time, the controller
            # on the wall clock), every stop was dropped as too old (an audit of its source).
            stop = not np.any(result.command)
            stamped = Header(stamp=Time() if stop else header.stamp, frame_id=self._command_frame)
            self.publisher.publish(twist_message(
                self._action_names, result.command, stamped if self.interface == "twist_stamped" else None))
        else:
            self.publisher.publish(command_message(result.command))

    def _trajectory(self, actions: np.ndarray, header: Header, when: float, config,
                    novel_observation: bool = False) -> JointTrajectory:
        """The trajectory of ``actions`` (``control.trajectory``: from the joints measured at
        ``when``, the cycle's time; moving for max_observation_age + one period at most, then at
        rest). A stop (one action, zero: two points at rest, now and a period on) holds the
        positions measured last (each joint's median over the newest few: one glitch is never
        held), as it is sent, at the first of a run of stops: re-sent from each fresh
        measurement, the hold would follow the arm's sag under gravity (``_stop_hold``: none,
        velocities only, where the measurement is not to be trusted). A standing zero
        (on_stale "hold" of a stop) holds still the same way. One action (a stop, a hold) is
        stamped 0, "start on receipt": stamped with its cycle's time, one that came late would
        end in the past, and the trajectory controller would refuse the stop."""
        if len(actions) == 1 and not np.any(actions):
            if (self._held_positions is None and not self._holds_none) or (
                    self._held_positions is not None and not self._held_measured and not novel_observation):
                # A run that held where the last trajectory took the joints (no fresh measurement
                # then) takes the measurement once one comes: the robot may not be there (a
                # rejected or failed trajectory), and an audit's ARRIVED stops held 0.71 away
                # from the goal the joints were measured at.
                held, holds_none, measured = self._stop_hold(config, novel_observation)
                if self._held_positions is None or measured:
                    self._held_positions, self._holds_none, self._held_measured = held, holds_none, measured
            start = self._held_positions
        else:
            self._held_positions, self._holds_none, self._held_measured = None, False, False
            start = self._measured_start(when, config, received_by=when)
            actions = actions[:trajectory_steps(config.period, config.max_observation_age)]
        if len(actions) == 1:
            header = Header(frame_id=header.frame_id)
        trajectory = trajectory_message(self.joints, actions, config.period, header, start, self._limits)
        self._sent = None if start is None else SentPositions(
            stamp_seconds(header.stamp), [seconds(p.time_from_start) for p in trajectory.points],
            [p.positions for p in trajectory.points])
        return trajectory

    def _stop_hold(self, config, novel_observation: bool) -> tuple[Optional[np.ndarray], bool, bool]:
        """The first stop of a run: (the positions it holds, or None; whether the run holds none
        whatever comes; whether they are the measurement's). The measurement, where one is fresh
        and plausible; else where the last trajectory sent takes the joints now
        (``SentPositions``: a trajectory controller refuses a stop of velocities only unless it
        integrates them, and it is driving the robot there); else none (velocities only). Not the measurement where the cycle found the observation
        NOVEL (the loop has just judged it implausible, and two glitches of three samples are
        their median) or where it lies beyond the position limits: held, either would be a
        position target the robot is not at (an adversarial audit: two joint_states of x=5.0,
        limits [-1, 1], then the driver died, and every stop held x=5.0)."""
        now = self._now()
        reference = None if self._sent is None else self._sent.at(now)
        if novel_observation:
            return reference, reference is None, False
        positions = self._measured_start(now, config, steady=True)
        if positions is not None and self._limits is not None:
            low, high = self._limits
            beyond = (positions < low) | (positions > high)
            if np.any(beyond):
                named = ", ".join(f"{self.joints[j]}={positions[j]:g}" for j in np.flatnonzero(beyond))
                held = "velocities only" if reference is None else "where the last trajectory took them"
                self._logger.warning(f"the stop holds {held}, not the measurement: {named} measured "
                                     "beyond the position limits (cost.joint_limits_low/high)",
                                     throttle_duration_sec=5.0)
                return reference, reference is None, False
        return (positions, False, True) if positions is not None else (reference, False, False)

    def _note_clock(self, config) -> None:
        """The clock jumped back (a sim reset, a bag loop; ``ControlLoop`` reports CLOCK): the
        robot may be elsewhere, so what was measured and held before the jump goes."""
        now = self._now()
        if now < self._clock_seen - max(config.period, 1e-3):
            self._measured.drop_after(now + config.max_stamp_lead)
            self._held_positions, self._holds_none, self._sent = None, False, None
            self._clock_seen = now
        self._clock_seen = max(self._clock_seen, now)

    def _measured_start(self, when: float, config, received_by: float = math.inf,
                        steady: bool = False) -> Optional[np.ndarray]:
        """The command joints' positions measured at ``when`` and received by ``received_by``
        (``MeasuredPositions.at``; a trajectory's: by its cycle's start), or with ``steady`` a
        stop's hold (``MeasuredPositions.steady``); None when none is at most
        max_observation_age old then, and the trajectory carries velocities only: positions
        from a dead joint_states would pull a position-tracking controller back to where the
        robot was."""
        if steady:
            positions, age = self._measured.steady(when, config.max_observation_age, config.max_stamp_lead)
        else:
            positions, age = self._measured.at(when, config.max_observation_age, config.max_stamp_lead, received_by)
        if positions is None and math.isfinite(age):
            how = f"{age:.3f} s old" if age >= 0 else f"stamped {-age:.3f} s ahead of the clock"
            self._logger.warning(
                f"joint_states for the trajectory's positions is {how} at {when:.3f} s "
                f"(max_observation_age {config.max_observation_age:g} s): the trajectory carries "
                f"velocities only{time_base_hint(age)}", throttle_duration_sec=5.0)
        return positions

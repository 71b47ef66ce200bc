"""Recent sensor samples that complete an observation at the control cycle (ROS-free).

Two models need more than the newest message:

* camera + joints: the newest frame is paired with the joint sample nearest its stamp (joint
  states usually come faster than frames, and never at the same instants); where none is near
  it yet (joint_states stamped behind the camera, or a late joint publisher), the newest fresh
  frame that has one;
* the last K frames: the newest frame with the K - 1 before it, one model period apart (a
  camera may run faster than the model's step), oldest first; before the first frame the first
  frame repeats, as the trainer stacks an episode's first frames.

Not thread-safe: callers lock around ``add``, ``clear`` and ``snapshot``.
"""
from __future__ import annotations

import collections
import math
from dataclasses import dataclass
from typing import Mapping, Optional

import numpy as np

FRAMES_KEPT = 128
"""Camera frames kept for a history model (4 s of a 30 Hz camera: 16 frames at 0.25 s)."""
JOINT_SAMPLES_KEPT = 16384
"""At most this many joint samples are kept for pairing with camera frames (16 s of a 1 kHz
joint_states); ``add`` keeps those of the last ``keep_s`` seconds."""


@dataclass
class Sample:
    """An observation (arrays without batch dimension), or why it cannot be used."""

    value: Optional[Mapping[str, np.ndarray]]
    stamp: float = math.nan
    error: str = ""
    received: float = math.nan
    """When it arrived (s, the loop's clock; NaN: not told)."""

    def aged_from(self, lead: float) -> float:
        """The time its age counts from (``age_origin``)."""
        return age_origin(self.stamp, self.received, lead)


def age_origin(stamp: float, received: float, lead: float) -> float:
    """The time an input's age counts from: its stamp, but no later than ``lead`` after it
    arrived (``received`` not finite: not told), so that a sensor stamping ahead of the clock
    is not taken for fresh longer after it died."""
    return min(stamp, received + lead) if math.isfinite(received) else stamp


class RecentInputs:
    """Joint samples and frames waiting to complete an observation (module docstring)."""

    def __init__(self, pairs_joints: bool, image_frames: int):
        self.pairs_joints, self.image_frames = bool(pairs_joints), int(image_frames)
        self._joints: collections.deque = collections.deque(maxlen=JOINT_SAMPLES_KEPT)
        self._frames: collections.deque = collections.deque(maxlen=FRAMES_KEPT)
        self._newest_joint: Optional[float] = None     # the largest stamp among _joints

    def keeps_apart(self, observation: Mapping[str, np.ndarray]) -> bool:
        """A joint sample for a camera + joints model: kept here, not an observation itself."""
        return self.pairs_joints and set(observation) == {"joints"}

    def add(self, observation: Mapping[str, np.ndarray], stamp: float, keep_s: float = math.inf,
            oldest: Optional[float] = None) -> None:
        """``keep_s``: joint samples older than this before the newest are dropped: a frame
        that old is stale anyway (a count would cover only a quarter second of a 1 kHz
        joint_states, and frames still fresh would find no joints to pair with). A joint
        sample pairs with a frame by ``stamp`` (its newest joint's); ``oldest``, its oldest
        joint's, says how old the rest of it is (default: ``stamp``)."""
        if self.keeps_apart(observation):
            self._joints.append((float(stamp), observation["joints"], float(stamp if oldest is None else oldest)))
            self._newest_joint = max(float(stamp), self._newest_joint or -math.inf)
            while self._joints[0][0] < stamp - keep_s:
                self._joints.popleft()
        elif self.image_frames > 1 and "image" in observation:
            self._frames.append((float(stamp), observation["image"]))

    def clear(self) -> None:
        self.clear_joints()
        self._frames.clear()

    def newest_joint_stamp(self) -> Optional[float]:
        """Kept as samples come (asked every cycle; the samples older than it go first)."""
        return self._newest_joint

    def clear_joints(self) -> None:
        self._joints.clear()
        self._newest_joint = None

    def snapshot(self) -> tuple[list, list]:
        return list(self._joints), list(self._frames)

    def complete(self, sample: Sample, snapshot: tuple[list, list], tolerance: float,
                 step: float, max_age: float = math.inf) -> Sample:
        """``sample`` with its paired joints and stacked frames, or with the reason it has none."""
        joints, frames = snapshot
        if self.pairs_joints and "joints" not in sample.value:
            sample = paired(sample, joints, tolerance, max_age)
            if sample.error:
                return sample
        if self.image_frames > 1 and "image" in sample.value:
            stacked = stack_frames(frames, sample.stamp, self.image_frames, step)
            sample = Sample({**sample.value, "image": stacked}, sample.stamp)
        return sample

    def complete_first(self, samples: list, snapshot: tuple[list, list], tolerance: float,
                       step: float, max_age: float = math.inf) -> Optional[Sample]:
        """The first of ``samples`` (earlier frames, newest first) that ``complete`` completes,
        or None: a camera + joints model's newest frame can be ahead of every joint sample
        received (joints stamped 0.06-0.2 s behind the camera made cycles STALE, on and off or
        for good, in an audit) while an earlier fresh frame has its pair."""
        joints = snapshot[0]
        if not joints:
            return None
        low = min(s[0] for s in joints) - tolerance     # frames no joint sample can pair with
        high = max(s[0] for s in joints) + tolerance    # are not tried
        for sample in samples:
            if low <= sample.stamp <= high:
                completed = self.complete(sample, snapshot, tolerance, step, max_age)
                if not completed.error:
                    return completed
        return None


def paired(frame: Sample, joints: list, tolerance: float, max_age: float = math.inf) -> Sample:
    """The frame with the joint sample nearest to its stamp (by the sample's newest joint), or
    why there is none; a sample whose oldest joint was measured more than ``max_age`` before the
    frame has a joint whose publisher stopped."""
    if not joints:
        return Sample(None, frame.stamp, "no joint_states yet (the model encodes the camera and joints)")
    # At one stamp the latest sample: a later message of that stamp completed it.
    stamp, value, oldest = min(reversed(joints), key=lambda s: abs(s[0] - frame.stamp))
    if abs(stamp - frame.stamp) > tolerance:
        return Sample(None, frame.stamp, (
            f"no joint_states within pair_tolerance {tolerance:g} s of the frame stamped "
            f"{frame.stamp:.3f} s (nearest {stamp:.3f} s)"))
    if frame.stamp - oldest > max_age:
        return Sample(None, frame.stamp, (
            f"a joint of the joint_states paired with the frame was measured {frame.stamp - oldest:.3f} s "
            f"before it (max_observation_age {max_age:g} s): a joint_states publisher stopped?"))
    return Sample({**frame.value, "joints": value}, frame.stamp)


def stack_frames(frames: list, stamp: float, count: int, step: float) -> np.ndarray:
    """The last ``count`` frames up to ``stamp``, ``step`` s apart, oldest first [K, S, S, 3]:
    for each time the frame nearest it; before the first frame, the first frame."""
    frames = [f for f in frames if f[0] <= stamp]
    stamps = np.array([f[0] for f in frames])
    chosen = []
    for back in range(count - 1, -1, -1):
        target = stamp - back * step
        nearest = frames[int(np.argmin(np.abs(stamps - target)))] if target >= stamps[0] - step / 2 else frames[0]
        chosen.append(nearest[1])
    return np.stack(chosen)

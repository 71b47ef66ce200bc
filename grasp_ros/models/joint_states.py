"""sensor_msgs/JointState into a model's joint layout: one rule for the node and the bag importer.

A robot may publish its joints in several JointState messages on one topic, each naming some of
them (an arm's driver and a gripper's, a base's wheels): ROS 2 allows it, and robot_state_publisher
reads it so. ``JointStateMerger`` does the same: each message updates the joints it names, a
message naming none of the wanted joints changes nothing, and the layout is whole once every
wanted joint has been named. Its stamp is the oldest of its joints' stamps, so a joint whose
publisher stopped makes the whole observation old (and the controller stale), never a frozen
value presented as new. A single publisher of every joint reads exactly as before. Two
publishers that name the same joint within a window (a sim and a driver both up, a stale driver
beside a live one, a relay beside its source) leave no way to tell which is the robot: where the
caller names each message's ``source``, such a message is refused (``SourceConflict``) until one
of them has been silent for the window.

Messages are read by their fields (``name``, ``position``, ``velocity``), so rclpy's messages and
those the ``rosbags`` package deserialises are read alike. Problems raise ``ValueError``.
"""
from __future__ import annotations

from collections import Counter
from typing import Hashable, Optional, Sequence

import numpy as np

from .sources import SourceLog, conflict_text
from .text import quote, shorten

FLOAT32_MAX = float(np.finfo(np.float32).max)
"""Largest magnitude a joint value may have: the models compute in float32."""


def select_joints(names: Sequence[str], positions: Sequence[float], wanted: Sequence[str],
                  what: str = "message") -> np.ndarray:
    """Positions [J] of the ``wanted`` joints, in that order, from one message that names them
    all (a goal). A message without names must list exactly the wanted joints' positions, in order."""
    index = _index(names, positions, what, len(wanted))
    keys = _keys(names, wanted)
    missing = [n for n, k in zip(wanted, keys) if k not in index]
    if missing:
        raise ValueError(f"{what} lacks joint(s) {missing} (has {quote(list(names))})")
    selected = np.asarray(positions, dtype=np.float64)[[index[k] for k in keys]]
    if not np.isfinite(selected).all():
        raise ValueError(f"{what} has non-finite positions {selected.tolist()}")
    return selected


def _keys(names: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """The wanted joints as ``_index`` knows them: by name, or by place in a message without names."""
    return list(wanted) if list(names) else [f"#{i}" for i in range(len(wanted))]


def _index(names: Sequence[str], values: Sequence[float], what: str, unnamed: int,
           noun: str = "positions") -> dict[str, int]:
    """Where each named joint's value is; a message without names lists ``unnamed`` values in the
    wanted order (named "#0", "#1", ... here)."""
    names, count = list(names), len(values)
    if not names:
        if count != unnamed:
            raise ValueError(f"{what} has no joint names and {count} {noun}; expected {unnamed}")
        return {f"#{i}": i for i in range(count)}
    if len(names) != count:
        raise ValueError(f"{what} has {len(names)} names but {count} {noun}")
    repeated = sorted(n for n, c in Counter(names).items() if c > 1)
    if repeated:
        raise ValueError(f"{what} names joint(s) {quote(repeated)} more than once")
    return {name: i for i, name in enumerate(names)}


class SourceConflict(ValueError):
    """Joints named by two sources within the window: neither can be taken for the robot."""


class JointStateMerger:
    """The newest ``fields`` ("position", "velocity") of each of the ``wanted`` joints, across
    JointState messages that each name some of them (module docstring)."""

    def __init__(self, wanted: Sequence[str], fields: Sequence[str] = ("position",),
                 what: str = "joint_states", keep_nonfinite: bool = False):
        self.wanted, self.fields, self.what = list(wanted), tuple(fields), what
        self.keep_nonfinite = keep_nonfinite   # a dataset drops such frames later; a controller refuses them
        self._values = np.full((len(self.wanted), len(self.fields)), np.nan)
        self._stamps: list = [None] * len(self.wanted)     # as given: s, or ns in a bag
        self._senders = SourceLog()          # who named each joint last (by index)

    @property
    def missing(self) -> list[str]:
        """Wanted joints no message has named yet."""
        return [n for n, s in zip(self.wanted, self._stamps) if s is None]

    def update(self, msg, stamp: float, latest: Optional[float] = None, source: Optional[Hashable] = None,
               window: float = 0.0) -> Optional[tuple[np.ndarray, float]]:
        """Take the wanted joints ``msg`` names, measured at ``stamp``. ``source``: its publisher
        (None: unknown, not checked); a wanted joint that another source named at a stamp within
        ``window`` of this one refuses the message (``SourceConflict``). ``latest``: the newest a
        measurement can be stamped (a controller's clock plus a lead): a later stamp counts as
        ``latest``, so a joint stamped in the future whose publisher stops still goes stale; and
        joints held with a stamp beyond it are forgotten first, since only a clock that jumped
        back since puts them there (a joint whose publisher died before a sim reset must not
        count as fresh). Returns the whole layout
        [J * fields] (name-major: j0.f0, j0.f1, j1.f0, ...) and the oldest of its joints'
        stamps; None when the message names no wanted joint or some wanted joint has never
        been named (``missing``). ValueError: the message names wanted joints but cannot be read
        (lengths, repeated names, a missing field, NaN); then nothing of it is taken.

        The newest message wins, whatever its stamp (a clock that jumped back must not freeze
        a joint): one stamped out of order makes an older observation, which the controller
        drops as it drops any other."""
        if latest is not None:
            stamp = min(stamp, latest)
            for j, held in enumerate(self._stamps):
                if held is not None and held > latest:
                    self._values[j], self._stamps[j] = np.nan, None
        rows = self._rows(list(msg.name), msg)
        if not rows:
            return None
        if source is not None:
            self._check_source([j for j, _ in rows], source, stamp, window)
        for j, row in rows:
            self._values[j], self._stamps[j] = row, stamp
        if None in self._stamps:
            return None
        return self._values.reshape(-1).copy(), min(self._stamps)

    def _check_source(self, joints: list[int], source: Hashable, stamp: float, window: float) -> None:
        """SourceConflict when another source named one of ``joints`` within ``window`` of
        ``stamp`` (a source is any hashable; its text names it; ``SourceLog``)."""
        others = {self.wanted[j]: other for j, other in self._senders.others(joints, source, stamp, window).items()}
        if others:
            raise SourceConflict(f"{self.what}: " + conflict_text(
                f"joint(s) {sorted(others)}", source, others.values(), window, "the robot", "each joint"))

    @property
    def newest(self):
        """The newest of the joints' stamps (None before any): when the layout was last measured
        at all. A camera frame pairs by it; a slow joint (a 10 Hz gripper beside a 100 Hz arm)
        would hold the oldest stamp a period back, too far from every frame."""
        return max((s for s in self._stamps if s is not None), default=None)

    def named_before(self, stamp: float) -> list[str]:
        """Wanted joints whose newest value was measured before ``stamp``."""
        return [n for n, s in zip(self.wanted, self._stamps) if s is not None and s < stamp]

    def _rows(self, names: list[str], msg) -> list[tuple[int, np.ndarray]]:
        """(wanted joint index, its field values) for each wanted joint the message names."""
        index = _index(names, msg.position, self.what, len(self.wanted))
        named = [(j, index[k]) for j, k in enumerate(_keys(names, self.wanted)) if k in index]
        if not named:
            return []
        columns = []
        for field_name in self.fields:
            values = msg.position if field_name == "position" else msg.velocity
            if field_name == "velocity":
                if len(values) == 0:
                    raise ValueError(f"{self.what} carries no velocities for {len(named)} wanted joint(s), "
                                     f"and the joint fields are {list(self.fields)}")
                _index(names, values, self.what, len(self.wanted), "velocities")
            columns.append(np.asarray(values, dtype=np.float64)[[i for _, i in named]])
        block = np.stack(columns, axis=1)                            # [named, fields]
        # Beyond float32's range is inf to the model: said as the input's, not as a NaN plan's.
        usable = np.abs(block) <= FLOAT32_MAX
        if not self.keep_nonfinite and not usable.all():
            bad = {self.wanted[j]: row[~ok].tolist() for (j, _), row, ok in zip(named, block, usable) if not ok.all()}
            raise ValueError(f"{self.what} has non-finite values, or beyond float32's range, for "
                             f"joint(s) {shorten(str(bad), 200)}")
        return [(j, row) for (j, _), row in zip(named, block)]

    def describe_missing(self, names: Sequence[str]) -> str:
        """Why there is no whole layout yet, for a status message."""
        return (f"{self.what} lacks joint(s) {self.missing} (this message has {quote(list(names))}), "
                "and no message so far has named them: each joint must come in some message on the topic")

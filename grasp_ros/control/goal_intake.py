"""Which received goal messages become the control loop's goal (ROS-free).

A goal arrives as an image, as joint values, or, for a model that observes a camera and joints,
as both in two messages that a sim publishes at once, in either order, stamped on whatever clock
or not at all. The rules:

* one-input model: a goal of any kind the model takes replaces the standing one; within a kind
  the newest to arrive, across kinds the newer stamp (an unstamped one is "now", newer than any
  stamped one: a goal typed by hand; so is one stamped further ahead of the loop's clock than
  ``max_observation_age``, on another clock: ordered by that stamp, it would hold out every goal
  of the other kind stamped on this one), and at one stamp (two unstamped ones too) the kind the
  model observes (the order in which two topics arrive is a race that a recording cannot show,
  nor a replay redo);
* camera + joints model: an image and joints make one goal when the other part is new (not yet
  part of a goal) or of the same stamp (within ``pair_tolerance``; two unstamped parts are not
  "of one stamp"). So the standing goal never becomes the new image with the old joints. Joints
  without a new image are a joint-space goal (through the model's ``decode_state`` joint head;
  the standing goal's own joints again change nothing); an image without new joints waits.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from ..models.contract import decodes_joints


class GoalPart(NamedTuple):
    """Half of a camera + joints model's goal: the image or the joints, as received."""
    value: np.ndarray
    stamp: int           # ns, 0: unstamped
    new: bool = True     # not yet part of a goal


class Verdict(NamedTuple):
    """What became of a goal message: taken, or why not (``warns``: worth a warning, as a half
    goal waiting for its other half while the old goal stands, or a stamp on another clock)."""
    taken: bool
    note: str = ""
    warns: bool = False


class GoalIntake:
    """The goal parts received for ``loop`` and the rules above; ``take`` sets the loop's goal."""

    def __init__(self, loop, observes_image: bool):
        self.loop, self.observes_image = loop, bool(observes_image)
        self.parts: dict[str, GoalPart] = {}          # a camera + joints model's, by kind
        self._standing: Optional[tuple[str, int]] = None   # (kind, stamp ns) of a one-input goal

    def accepts(self, kind: str) -> bool:
        """Whether the model takes goals of ``kind`` ("image": it encodes images; "joints": its
        card names goal joints). A goal of another kind is ignored, so that it cannot replace a
        usable goal of the other kind (a sim may publish both)."""
        card = self.loop.card
        if kind == "image":
            return card.image is not None or self.loop.image_size > 0
        return card.goal_joint_input is not None

    def take(self, key: str, value: np.ndarray, stamp: int, now: Optional[int] = None) -> Verdict:
        """A goal ``key`` ("image" or "joints") received with header ``stamp`` (ns, 0: none) at
        ``now`` (ns, the loop's clock; None: stamps are not checked against it)."""
        loop = self.loop
        if not loop.pairs_joints:
            ahead = 0 if now is None or stamp == 0 else stamp - now
            if ahead > 0 and ahead > loop.config.max_observation_age * 1e9:
                stamp = 0
            if not self._replaces(key, stamp, now):
                kind, standing = self._standing
                return Verdict(False, f"goal ({key}) not taken: " + (
                    f"stamped before the {kind} goal" if stamp < standing
                    else f"the {kind} goal of the same stamp stands"))
            self._standing = (key, stamp)
            loop.set_goal({key: value})
            if stamp == 0 and ahead > 0:
                return Verdict(True, f"goal ({key}) stamped {ahead * 1e-9:.3f} s ahead of the clock (more "
                                     f"than max_observation_age): ordered as unstamped, sent now", warns=True)
            return Verdict(True)
        other = "image" if key == "joints" else "joints"
        partner, standing = self.parts.get(other), self.parts.get(key)
        self.parts[key] = GoalPart(value, stamp)
        same_stamp = partner is not None and stamp != 0 and partner.stamp != 0 and \
            abs(partner.stamp - stamp) <= loop.config.pair_tolerance * 1e9
        if partner is not None and (partner.new or same_stamp):
            loop.set_goal({k: self.parts[k].value for k in ("image", "joints")})
            for k in ("image", "joints"):
                self.parts[k] = self.parts[k]._replace(new=False)
            return Verdict(True)
        if standing is not None and not standing.new and np.array_equal(standing.value, value):
            return Verdict(False)   # the standing goal's own part again (a sim republishing it)
        if key == "joints" and decodes_joints(loop.model):
            loop.set_goal({key: value})
            return Verdict(True)
        return Verdict(False, f"goal ({key}) not taken yet: this model's goal is an image and joints "
                              f"together; it waits for a new goal {other} (or one of its header stamp), "
                              "and the standing goal stands", warns=True)

    def refuse(self, reason: str) -> None:
        """A goal message that could not be read (``reason``): the loop's goal is that refusal
        (ERROR) until a goal is taken, so no standing goal keeps the next one of another kind
        out. (A camera + joints model's parts stay: a new half still waits for its other half.)"""
        self._standing = None
        self.loop.reject_goal(reason)

    def _replaces(self, key: str, stamp: int, now: Optional[int]) -> bool:
        """Whether a goal of kind ``key`` replaces a one-input model's standing goal. A standing
        goal stamped further ahead of the clock ``now`` than ``max_observation_age`` was stamped
        before the clock jumped back (a sim reset, a bag loop): its stamp orders nothing (an
        audit: after a reset the new joint goal was refused as older than the old image goal,
        and the robot went on to the old goal, OK)."""
        if self._standing is None:
            return True
        kind, standing = self._standing
        if now is not None and standing - now > self.loop.config.max_observation_age * 1e9:
            return True
        if kind == key or stamp > standing or (stamp == 0 and standing != 0):
            return True
        return stamp == standing and key == ("image" if self.observes_image else "joints")

"""Who last sent each of some inputs (the joints of a joint layout, a camera), and when.

Two publishers of one input within a window (a sim and a driver both up, a stale driver beside
a live one, a bag replayed beside the robot, a relay beside its source) leave no way to tell
which is the robot. ``SourceLog.others`` names, for a message, the inputs another publisher sent
within the window; each input's sender becomes the message's either way, so that two sources
taking turns are both refused, not every other message taken.
"""
from __future__ import annotations

from typing import Hashable, Iterable


class SourceLog:
    """Per input (any hashable key): the (source, stamp) that sent it last."""

    def __init__(self):
        self._last: dict[Hashable, tuple[Hashable, float]] = {}

    def others(self, keys: Iterable[Hashable], source: Hashable, stamp: float,
               window: float) -> dict[Hashable, Hashable]:
        """The inputs among ``keys`` that another source sent at a stamp within ``window`` of
        ``stamp``, each with that source; ``source`` becomes each one's sender."""
        found = {}
        for key in keys:
            last = self._last.get(key)
            self._last[key] = (source, stamp)
            if last is not None and last[0] != source and abs(stamp - last[1]) <= window:
                found[key] = last[0]
        return found


def conflict_text(sent: str, source, others, window: float, whose: str, each: str) -> str:
    """Why ``sent`` ("joint(s) ['x']", "frames") from ``source`` and ``others`` (sources) is
    refused: which of them is ``whose`` ("the robot", "the robot's camera") cannot be told;
    ``each`` ("each joint", "the camera") is to get one publisher."""
    named = ", ".join(sorted({str(o) for o in others}))
    return (f"{sent} come from {source} and from {named} within {window:g} s: which one is {whose} "
            "cannot be told (a sim and a driver both up, a bag replayed beside the robot, a stale "
            f"publisher, a relay beside its source); give {each} one publisher (stop or remap the "
            f"other); one silent for {window:g} s lets the other through")

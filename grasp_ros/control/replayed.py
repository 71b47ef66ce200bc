"""The recorded cycles a replay repeats as they went, not as planned in time (ROS-free).

A run recorded in real time has FALLBACK cycles whose own plan was not used. A replay plans
every cycle to the iteration cap (``timing`` fixed_iterations), so it names those cycles by
their times (s, the controller's clock), each of one kind:

* late: the plan missed its deadline: plan, send the previous plan's action, and let the late
  plan warm-start once the recorded planner was free again (after the busy cycles that follow);
* busy: the planner was still on a late plan: send the previous plan's action, without planning;
* overdue: the command was ready too late (the process held up): the cycle, then the stop.

The controller takes them as the parameters ``replay.<kind>_cycles`` (``parameter``).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..timebase import SAME_TIME_S

KINDS = ("late", "busy", "overdue")


def parameter(kind: str) -> str:
    """The controller parameter that names a replay's cycles of ``kind``."""
    return f"replay.{kind}_cycles"


@dataclass(frozen=True)
class ReplayedCycles:
    """Cycle times of each kind (module docstring); empty: a run that is no replay."""

    late: tuple = ()
    busy: tuple = ()
    overdue: tuple = ()

    def __bool__(self) -> bool:
        return any(getattr(self, kind) for kind in KINDS)

    def named(self, kind: str, now: float) -> bool:
        """Whether the cycle at ``now`` is one of ``kind``'s (a time through a float matches)."""
        return any(abs(now - t) <= SAME_TIME_S for t in getattr(self, kind))

    def validate(self, fixed_iterations: bool) -> None:
        if self and not fixed_iterations:
            raise ValueError(f"{', '.join(parameter(k) for k in KINDS)} (a replay's recorded late, "
                             "busy and overdue cycles) need timing fixed_iterations")

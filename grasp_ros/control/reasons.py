"""The reasons a cycle gives that a replay reads back (ROS-free).

A cycle's status text ("STATUS: reason") is for people, but some reasons are also facts that a
replay must repeat or recognise in a recording: a late plan, a planner still busy, a command
overdue, the watchdog's stop, a cycle without a goal. They are written and read here only, so
that rewording one cannot silently change what a replay makes of a bag.
"""
from __future__ import annotations

from typing import Optional

LATE = "no plan by the deadline"
"""A cycle whose plan was not ready by its deadline: the previous plan's action went out."""
BUSY = "the planner is still on the cycle it began"
"""A cycle that found the planner still on a late plan: it planned nothing."""
OVERDUE = "this process was held up"
"""A cycle whose command was ready so late (the process stopped or starved) that the stop went
out instead; ``overdue`` writes the reason, with what the command had been."""
WATCHDOG = "no control cycle for"
"""The clock watchdog's stop: no cycle ran for clock_timeout."""
NO_GOAL = "no goal yet"
"""A cycle before any goal came: the stop."""

_WAS = "; the command was "


def overdue(why: str, status: str, message: str) -> str:
    """The reason of an overdue command's stop: ``why`` it was overdue, and what it had been
    (``status`` and its ``message``: a busy cycle stays recognisable as one)."""
    return f"{OVERDUE} ({why}){_WAS}{status}" + (f": {message}" if message else "")


def overdue_status(text: str) -> Optional[str]:
    """The status name an overdue command had, from a reason ``overdue`` wrote; None for any
    other text."""
    if OVERDUE not in text or _WAS not in text:
        return None
    return text.split(_WAS, 1)[1].split(":", 1)[0].strip()

"""Time in integer nanoseconds, as ROS stamps and rosbag2 receive times count it.

ROS-free: a stamp is anything with ``sec`` and ``nanosec`` (a builtin_interfaces/Time, or a
rosbags-deserialised one), so the bag readers and the nodes share one definition.
"""
from __future__ import annotations

NS = 1_000_000_000
"""Nanoseconds per second."""
SAME_TIME_NS = 1_000
"""Two times this close are the same time: a cycle's time goes through a float (seconds) in the
controller, so the stamp it reports or the time a replay names may be off by a rounding."""
SAME_TIME_S = SAME_TIME_NS / NS
"""``SAME_TIME_NS`` in seconds, for times held as floats."""


def stamp_ns(stamp) -> int:
    """A stamp (``sec``, ``nanosec``) as integer nanoseconds."""
    return int(stamp.sec) * NS + int(stamp.nanosec)

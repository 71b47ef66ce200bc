"""/clock taken on a thread of its own, not by the node's executor (sim time).

rclpy's time source subscribes /clock on the node it serves, so every clock message wakes that
node's executor, which rebuilds its wait set in Python (the controller's has some 50 entities):
about 0.6 ms a message. A simulator publishes /clock at each physics step (Gazebo: 1 kHz), and
the controller's executor then took 66% of a core (measured, docs/notes/sim_clock.md); on a
2-core robot computer, an outside arm's planner ran no iteration in 79% of its cycles. Here one
thread waits on a wait set of the clock subscription alone and sets the node's clock from each
message (about 0.1 ms): the executor wakes for the timers that the clock makes due, as before.
"""
from __future__ import annotations

import threading
import time
from typing import Optional

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from rosgraph_msgs.msg import Clock

from .conversions import checked_time

CLOCK_TOPIC = "/clock"
WAIT_NS = 200_000_000
"""How often the thread looks up from waiting (ns): to see that it is to stop."""
REFUSED_PAUSE_S = 0.001
"""A pause after a message refused, so that a stream of them cannot spin the thread."""


class ClockFollower:
    """Follows /clock for ``node``'s clock from a thread of its own (module docstring): the
    node's own /clock subscription is removed. ``stop()`` before the node is destroyed."""

    def __init__(self, node: Node):
        for sub in list(node.subscriptions):
            if sub.topic_name == CLOCK_TOPIC:      # the time source's: every message woke the executor
                node.destroy_subscription(sub)
        self._clock = node.get_clock()
        self._context = node.context
        self._logger = node.get_logger()
        # A node of its own (a subscription needs one), outside every executor. Its name by a
        # remap of its own: launch renames every node of the process (a global __node:=), and
        # two nodes of one name confuse the graph and the ros2 CLI (an audit of the launch stack).
        name = f"{node.get_name()}_clock"
        self._node = Node(name, namespace=node.get_namespace(), context=node.context,
                          cli_args=["--ros-args", "-r", f"__node:={name}"],
                          start_parameter_services=False, enable_rosout=False)
        # The time source's QoS (best effort, the newest only); no QoS event handlers to wait on.
        self._sub = self._node.create_subscription(
            Clock, CLOCK_TOPIC, lambda msg: None, QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT),
            event_callbacks=SubscriptionEventCallbacks(use_default_callbacks=False))
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = threading.Thread(
            target=self._follow, name="sim-clock", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        with self._context.handle:
            wait_set = _rclpy.WaitSet(1, 0, 0, 0, 0, 0, self._context.handle)
        refused = 0
        while not self._stop.is_set() and self._context.ok():
            try:
                with self._sub.handle:
                    wait_set.clear_entities()
                    wait_set.add_subscription(self._sub.handle)
                    wait_set.wait(WAIT_NS)
                    taken = self._sub.handle.take_message(Clock, False)
                if taken is not None:
                    self._clock.set_ros_time_override(Time.from_msg(checked_time(taken[0].clock)))
            except Exception as exc:  # noqa: BLE001 -- any peer's message: refused, never the end
                if self._stop.is_set() or not self._context.ok():
                    return                      # shut down under the wait: nothing to follow
                refused += 1                    # (a negative time, nanosec >= 1e9; bad bytes)
                if refused & (refused - 1) == 0:     # the 1st, 2nd, 4th, 8th... time
                    self._logger.error(f"refused a /clock message ({refused} so far), the clock stays "
                                       f"where it was: {type(exc).__name__}: {exc}")
                time.sleep(REFUSED_PAUSE_S)

    def stop(self) -> None:
        """Stop the thread (within WAIT_NS) and destroy the subscription and its node."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            self._node.destroy_node()

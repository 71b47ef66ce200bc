"""``odometry_relay``: a Nav2 base's pose as joints, and Nav2's goal pose as a joint goal.

The controller reads joints from sensor_msgs/JointState and takes joint goals as
grasp_ros/JointGoal. A mobile base reports its pose as nav_msgs/Odometry (``odom``) and is sent
goals as geometry_msgs/PoseStamped (``goal_pose``: RViz's "2D Goal Pose", Nav2's). This node
relays both, so the documented bag -> model -> controller path serves a base too:

* ``odom`` -> JointState on ``base_state``: joints ``x``, ``y``, ``yaw`` (positions: the pose
  in the odometry frame; velocities: the twist turned from the base frame into that frame), with
  the odometry's header stamp. Record it, collect with ``--joint-topic /base_state
  --continuous-joints yaw``, and remap the controller's ``joint_states`` to it.
* ``goal_pose`` -> JointGoal on ``goal_state`` (x, y, yaw; remap it to the controller's
  ``~/goal_state``), latched like the controller's goals. A pose in another frame than the
  odometry's is refused with a warning: the relay does no transforms (tf2 would). A pose that
  comes before any odometry waits for the first (the newest such pose), which says its frame; one
  without a frame is taken in the odometry's.

Odometry in another frame than the first one relayed, or stamped before the last one relayed
while the clock has passed that stamp, is not relayed (``OdometryGate``): two sources on one
topic (a wheel odometry and a filter's, a stray replay) would otherwise make the base jump
between two poses from one message to the next. A clock that went back (a simulator reset) takes
the odometry stamped after it.

Run: ``python -m grasp_ros.ros.odometry_relay --ros-args -r goal_state:=/grasp_controller/goal_state``.
"""
from __future__ import annotations

if __name__ == "__main__":   # a node's process (python -m), before its heavy imports
    from grasp_ros.ros.interrupts import end_at_once_on_stop_signals
    end_at_once_on_stop_signals()

import math
import sys
from typing import Optional

import rclpy
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import JointState

from grasp_ros.msg import JointGoal
from ..process_exit import leave
from . import interrupts, qos

JOINTS = ("x", "y", "yaw")


QUATERNION_NORM = (0.9, 1.1)
"""Norms of an orientation taken for a rotation (float rounding, a driver's own drift); the
zero quaternion, or (0, 0, 0.5, 0), is no rotation at all (an adversarial audit: read as yaw 0)."""


def yaw_of(q) -> float:
    """The rotation about z of a quaternion (x, y, z, w), in (-pi, pi]; ValueError for one that is
    not a rotation (its norm outside ``QUATERNION_NORM``; NaN passes through, said by the caller).
    The form holds for any norm: a near-unit one rounds to the unit one's yaw."""
    norm = math.sqrt(q.x * q.x + q.y * q.y + q.z * q.z + q.w * q.w)
    if not QUATERNION_NORM[0] <= norm <= QUATERNION_NORM[1] and math.isfinite(norm):
        raise ValueError(f"orientation ({q.x:g}, {q.y:g}, {q.z:g}, {q.w:g}) has norm {norm:.3g}: not "
                         "a rotation")
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), q.w * q.w + q.x * q.x - q.y * q.y - q.z * q.z)


def odometry_to_joints(msg: Odometry) -> JointState:
    """The base's pose and velocity as joints x, y, yaw; ValueError for a non-finite one."""
    p, q, v = msg.pose.pose.position, msg.pose.pose.orientation, msg.twist.twist
    yaw = yaw_of(q)
    vx = v.linear.x * math.cos(yaw) - v.linear.y * math.sin(yaw)     # base frame -> odometry frame
    vy = v.linear.x * math.sin(yaw) + v.linear.y * math.cos(yaw)
    positions, velocities = [p.x, p.y, yaw], [vx, vy, v.angular.z]
    if not all(map(math.isfinite, positions + velocities)):
        raise ValueError(f"odometry with non-finite values: pose {positions}, velocity {velocities}")
    return JointState(header=msg.header, name=list(JOINTS), position=positions, velocity=velocities)


def pose_to_goal(msg: PoseStamped) -> JointGoal:
    """A goal pose as the joint goal x, y, yaw; ValueError for a non-finite one."""
    p = msg.pose.position
    values = [p.x, p.y, yaw_of(msg.pose.orientation)]
    if not all(map(math.isfinite, values)):
        raise ValueError(f"goal pose with non-finite values {values}")
    return JointGoal(header=msg.header, name=list(JOINTS), position=values)


class OdometryGate:
    """Which odometry messages the relay passes on (module docstring)."""

    def __init__(self):
        self.frame: Optional[str] = None        # the first relayed odometry's frame
        self._last_ns: Optional[int] = None     # the newest relayed stamp

    def refusal(self, frame: str, stamp_ns: int, now_ns: int) -> str:
        """Why this odometry is not relayed ("": it is); call ``passed`` once it is."""
        if self.frame is not None and frame != self.frame:
            return (f"odometry in frame {frame[:80]!r}, the first relayed was in {self.frame[:80]!r}: "
                    "not relayed (two odometry sources on one topic?)")
        if self._last_ns is not None and stamp_ns < self._last_ns <= now_ns:
            return (f"odometry stamped {(self._last_ns - stamp_ns) / 1e9:.3f} s before the last one "
                    "relayed: not relayed (two odometry sources on one topic, or an old one replayed?)")
        return ""

    def passed(self, frame: str, stamp_ns: int) -> None:
        self.frame, self._last_ns = frame, stamp_ns


class OdometryRelay(Node):
    def __init__(self, **kwargs):
        super().__init__("odometry_relay", **kwargs)
        self._odometry = OdometryGate()
        self._held: Optional[PoseStamped] = None     # the newest goal before it: unchecked yet
        self._joints = self.create_publisher(JointState, "base_state", qos.COMMAND)
        self._goal = self.create_publisher(JointGoal, "goal_state", qos.GOAL)
        # best effort takes a reliable publisher's odometry too
        self.create_subscription(Odometry, "odom", self._on_odometry, qos.SENSOR)
        self.create_subscription(PoseStamped, "goal_pose", self._on_goal, qos.COMMAND)

    @property
    def _frame(self) -> Optional[str]:
        """The odometry's frame, once one was relayed: the frame goal poses must be in."""
        return self._odometry.frame

    def _on_odometry(self, msg: Odometry) -> None:
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        try:
            refusal = self._odometry.refusal(msg.header.frame_id, stamp, self.get_clock().now().nanoseconds)
            if refusal:
                raise ValueError(refusal)
            self._joints.publish(odometry_to_joints(msg))
            self._odometry.passed(msg.header.frame_id, stamp)
        except ValueError as exc:    # the controller goes stale on its own: nothing relayed
            self.get_logger().warning(str(exc), throttle_duration_sec=1.0)
        if self._held is not None and self._frame is not None:
            held, self._held = self._held, None
            self._on_goal(held)

    def _on_goal(self, msg: PoseStamped) -> None:
        frame = msg.header.frame_id
        if self._frame is None:      # its frame cannot be checked yet: relayed or refused later
            self._held = msg
            self.get_logger().info("goal pose held until the first odometry gives its frame")
            return
        if frame and frame != self._frame:
            self.get_logger().warning(f"goal pose in frame {frame[:80]!r}, the odometry's is "
                                      f"{self._frame[:80]!r}: not relayed (no transforms here)",
                                      throttle_duration_sec=1.0)
            return
        try:
            goal = pose_to_goal(msg)
        except ValueError as exc:
            self.get_logger().warning(str(exc), throttle_duration_sec=1.0)
            return
        self._goal.publish(goal)
        self.get_logger().info("goal: x={:.3f} y={:.3f} yaw={:.3f}".format(*goal.position))


def main(args=None) -> int:
    """Relay until SIGINT or SIGTERM (the first ends the spin; later ones are ignored)."""
    stopped = interrupts.flag_once()
    rclpy.init(args=sys.argv if args is None else args, signal_handler_options=SignalHandlerOptions.NO)
    node = executor = None
    try:
        node = OdometryRelay()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not stopped():
            executor.spin_once(timeout_sec=0.1)
    except ExternalShutdownException:
        pass
    finally:
        interrupts.ignore()      # a repeated signal must not cut the shutdown short
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    leave(main())

"""The QoS of each of grasp_controller's topics, chosen once here.

* Sensor streams (image, joint_states): best effort, keep the last few. Only the newest sample
  matters, and a best-effort subscription matches both reliable and best-effort publishers.
  Their subscriptions take ROS 2 QoS overrides (``SENSOR_OVERRIDES``: history, depth,
  reliability as read-only parameters such as ``qos_overrides./image.subscription.reliability``),
  so that ``grasp-ros replay`` can make them reliable and deep, and know each input was delivered,
  and a robot's large raw camera can be read reliably: a best-effort reader loses most of its
  frames in DDS fragments (the node counts them and names the override: ``delivery``).
* joint_states is read 50 deep (sensor-data QoS otherwise): its samples pair with camera frames
  by stamp, and a queue of 5 holds only 0.1 s of a 50 Hz driver, less than an executor held up
  on a busy machine (an outside robot's audit: STALE, "no joint_states within pair_tolerance"
  of a frame, with the driver publishing every 20 ms).
* Goals: reliable, depth 1, read twice: transient local, so that a goal published once before
  the controller starts still arrives (the sim's /goal_state offers it), and volatile, so that a
  publisher of the default profile (volatile: most code, most tools), which a transient-local
  reader cannot match, is heard too. A message both receive is handled once
  (``publishers.Once``); ``goal_readers``.
* Commands: reliable, depth 10, what ros2_control's controllers subscribe with.
* Diagnostics and plans: reliable, depth 10.
* The ``~/reset`` service: reliable, depth 1000 (as rclpy's parameter services). The default
  services profile keeps only the last 10 requests: a burst of more is silently dropped, and
  those callers wait forever.
"""
from __future__ import annotations

import copy

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)
from rclpy.qos_overriding_options import QoSOverridingOptions

SENSOR = qos_profile_sensor_data
SENSOR_OVERRIDES = QoSOverridingOptions.with_default_policies()
JOINT_STATES = QoSProfile(depth=50, history=HistoryPolicy.KEEP_LAST,
                          reliability=SENSOR.reliability, durability=SENSOR.durability)

GOAL = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                  reliability=ReliabilityPolicy.RELIABLE,
                  durability=DurabilityPolicy.TRANSIENT_LOCAL)

GOAL_VOLATILE = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                           reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.VOLATILE)


def goal_readers() -> list[tuple[QoSProfile, dict]]:
    """(profile, subscription options) of a goal topic's two readers. The transient-local one
    says nothing of a publisher it cannot match: a volatile one is heard by the other reader
    (rclpy's warning would call a working goal publisher incompatible), and the other reader
    names what it cannot match itself (a best-effort publisher)."""
    quiet = SubscriptionEventCallbacks(incompatible_qos=lambda info: None)
    return [(GOAL, {"event_callbacks": quiet}), (GOAL_VOLATILE, {})]

COMMAND = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST,
                     reliability=ReliabilityPolicy.RELIABLE)

REPORT = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST,
                    reliability=ReliabilityPolicy.RELIABLE)

SERVICE = QoSProfile(depth=1000, history=HistoryPolicy.KEEP_LAST,
                     reliability=ReliabilityPolicy.RELIABLE)


def overridable(profile: QoSProfile) -> QoSProfile:
    """A copy of ``profile`` for a subscription that takes QoS overrides: rclpy writes the
    overrides into the profile object it is given, and one shared object (SENSOR is rclpy's own
    qos_profile_sensor_data) would carry one node's reliable camera reader into every later
    subscription of the process."""
    return copy.copy(profile)

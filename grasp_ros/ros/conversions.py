"""ROS messages <-> numpy, at the node's boundary (no cv_bridge).

Every function that reads a message raises ``ValueError`` with the reason when the message
cannot be used, so the node can report it instead of crashing.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped, Twist, TwistStamped
from nav_msgs.msg import Path
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray, Header
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from ..models.joint_states import JointStateMerger, select_joints
from ..models.preprocess import decode_compressed, decode_raw, prepare_image
from ..timebase import NS, stamp_ns  # noqa: F401 -- stamp_ns: the node converts its stamps here

WRITTEN_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
"""Encodings ``rgb_to_image`` writes (``image_to_rgb`` reads these and the others of
``grasp_ros.models.preprocess.ENCODINGS``)."""


# -- time -------------------------------------------------------------------------------------

def seconds(stamp: Time) -> float:
    return stamp.sec + 1e-9 * stamp.nanosec


def checked_time(stamp: Time) -> Time:
    """``stamp`` itself; raises ValueError for what no clock produces: negative seconds,
    nanosec >= 1e9 (rclpy would carry the excess into the seconds)."""
    if stamp.sec < 0 or not 0 <= stamp.nanosec < NS:
        raise ValueError(f"invalid stamp sec={stamp.sec} nanosec={stamp.nanosec} (sec must be "
                         ">= 0 and nanosec < 1e9)")
    return stamp


def stamp_seconds(stamp: Time) -> Optional[float]:
    """A header stamp in seconds; None for the zero stamp (unstamped: the receiver's "now").
    Raises ValueError for what no clock produces (``checked_time``)."""
    checked_time(stamp)
    if stamp.sec == 0 and stamp.nanosec == 0:
        return None
    return seconds(stamp)


INT32_MAX = 2**31 - 1


def to_time(t: float) -> Time:
    """A stamp of ``t`` s; the last one builtin_interfaces can hold past it (its sec is an int32,
    which a larger value would wrap to a stamp 68 years back)."""
    sec, nanosec = _split(t)
    return Time(sec=sec, nanosec=nanosec)


def to_duration(t: float) -> Duration:
    sec, nanosec = _split(t)
    return Duration(sec=sec, nanosec=nanosec)


def _split(t: float) -> tuple[int, int]:
    sec = math.floor(t)
    if sec > INT32_MAX:
        return INT32_MAX, 999_999_999
    return int(sec), min(int(round((t - sec) * 1e9)), 999_999_999)


# -- images -----------------------------------------------------------------------------------

def image_to_rgb(msg: Image, size: int = 0, crop: str = "center") -> np.ndarray:
    """The model's input RGB uint8 [size, size, 3] of a sensor_msgs/Image of any size, by the
    rosbag importer's path (``grasp_ros.models.preprocess``: crop ``center`` or ``stretch``);
    ``size`` 0: the decoded frame [H, W, 3] as it is."""
    rgb = decode_raw(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)
    return prepare_image(rgb, size, crop) if size else rgb


def compressed_image_to_rgb(msg: CompressedImage, size: int = 0, crop: str = "center") -> np.ndarray:
    """``image_to_rgb`` for a sensor_msgs/CompressedImage (jpeg, png: image_transport's
    ``compressed``)."""
    rgb = decode_compressed(msg.format, msg.data)
    return prepare_image(rgb, size, crop) if size else rgb


def rgb_to_image(pixels: np.ndarray, encoding: str = "rgb8", header: Optional[Header] = None) -> Image:
    """sensor_msgs/Image of an RGB uint8 [H, W, 3] array, in one of ``WRITTEN_ENCODINGS``
    (alpha 255)."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected RGB uint8 [H, W, 3], got {pixels.dtype} {pixels.shape}")
    if encoding not in WRITTEN_ENCODINGS:
        raise ValueError(f"unsupported image encoding {encoding!r}; expected one of "
                         f"{', '.join(WRITTEN_ENCODINGS)}")
    if encoding.startswith("bgr"):
        pixels = pixels[..., ::-1]
    if encoding.endswith("a8"):
        pixels = np.concatenate([pixels, np.full_like(pixels[..., :1], 255)], axis=2)
    elif encoding == "mono8":
        pixels = pixels.mean(axis=2, keepdims=True).round().astype(np.uint8)
    pixels = np.ascontiguousarray(pixels)
    height, width, channels = pixels.shape
    return Image(header=header or Header(), height=height, width=width, encoding=encoding,
                 is_bigendian=0, step=width * channels, data=pixels.tobytes())


# -- commands ---------------------------------------------------------------------------------

def command_message(command: np.ndarray) -> Float64MultiArray:
    """The command for a ros2_control forward_command_controller: one value per joint."""
    return Float64MultiArray(data=[float(v) for v in np.asarray(command).reshape(-1)])


def trajectory_message(joint_names: Sequence[str], actions: np.ndarray, period: float,
                       header: Header, start: Optional[np.ndarray] = None,
                       limits: Optional[tuple[np.ndarray, np.ndarray]] = None) -> JointTrajectory:
    """The planned joint velocities as a JointTrajectory: point t at t x period, velocities =
    action t, and a last point one period after the last action, at rest: ros2_control's
    joint_trajectory_controller refuses by default a trajectory that ends moving
    (``allow_nonzero_velocity_at_trajectory_end``), and the plan ends there anyway.

    ``start`` [J]: the measured joint positions now. With it, each point also carries positions,
    as the trajectory controller expects of a point with velocities; without it, velocities only
    (the controller then needs ``allow_integration_in_goal_trajectories``). The positions move by
    the mean of each two points' velocities times the period: the controller's default cubic
    spline through them then ramps straight from one point's velocity to the next, never beyond
    either. Positions moved by each action held over its period (what the model plans) made it
    overshoot: 4/3 of a velocity followed by rest, 5/3 of a reversal, past the robot's
    velocity limits (an audit against ros2_controllers' spline).

    ``limits`` (low [J], high [J]): the joints' position limits; with ``start``, velocities are
    cut so that no joint passes one along the spline (``limited_velocities``).
    """
    actions = np.asarray(actions, dtype=np.float64).reshape(len(actions), -1)
    velocities = np.vstack([actions, np.zeros((1, actions.shape[1]))])
    positions = None
    if start is not None and np.size(start) == actions.shape[1] == len(joint_names):
        start = np.asarray(start, dtype=np.float64)
        if limits is not None:
            velocities = limited_velocities(start, velocities, period, *limits)
        steps = (velocities[:-1] + velocities[1:]) * (period / 2)
        positions = start + np.vstack([np.zeros_like(start)[None], np.cumsum(steps, axis=0)])
    points = []
    for t, velocity in enumerate(velocities):
        point = JointTrajectoryPoint(velocities=[float(v) for v in velocity],
                                     time_from_start=to_duration(t * period))
        if positions is not None:
            point.positions = [float(v) for v in positions[t]]
        points.append(point)
    return JointTrajectory(header=header, joint_names=list(joint_names), points=points)


def limited_velocities(start: np.ndarray, velocities: np.ndarray, period: float, low, high) -> np.ndarray:
    """``velocities`` [P, J] at points a period apart (the last at rest), each cut where a joint
    going from ``start`` [J], its velocity ramping straight from point to point, would pass
    [low, high] [J]. Each point's velocity is kept within what still lets the joint ramp down
    to rest by the next point inside the limits (from position p at velocity v it travels v x
    period / 2 more), so no point, and nothing between two, lies beyond a limit. A joint already
    beyond one (a measurement) is not pulled back: it may stay or move inwards. Velocities that
    no limit cuts are kept as they are."""
    low, high = np.minimum(low, start), np.maximum(high, start)
    limited = velocities.copy()
    # ``rest``: where each joint comes to rest if it ramps down to 0 after the point before;
    # point t's velocity v moves that by v x period (half of it to the point, half on to rest),
    # by v x period / 2 from the start
    rest = start
    for t in range(len(limited)):
        span = period if t else period / 2
        limited[t] = np.clip(limited[t], (low - rest) / span, (high - rest) / span)
        rest = rest + limited[t] * span
    return limited


def path_message(positions: np.ndarray, header: Header) -> Path:
    """nav_msgs/Path through positions [N, 2] (or [N, 3]) in ``header.frame_id``."""
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] not in (2, 3):
        raise ValueError(f"positions must be [N, 2] or [N, 3], got {positions.shape}")
    poses = []
    for p in positions:
        pose = PoseStamped(header=header)
        pose.pose.position.x, pose.pose.position.y = float(p[0]), float(p[1])
        pose.pose.position.z = float(p[2]) if p.size == 3 else 0.0
        pose.pose.orientation.w = 1.0
        poses.append(pose)
    return Path(header=header, poses=poses)


# -- diagnostics ------------------------------------------------------------------------------

LEVELS = {"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN, "error": DiagnosticStatus.ERROR,
          "stale": DiagnosticStatus.STALE}


def diagnostic_array(name: str, hardware_id: str, level: str, message: str,
                     values: dict[str, str], stamp: Time) -> DiagnosticArray:
    """A DiagnosticArray with one status; ``level`` is ok, warn, error or stale."""
    status = DiagnosticStatus(level=LEVELS[level], name=name, message=message,
                              hardware_id=hardware_id,
                              values=[KeyValue(key=k, value=v) for k, v in values.items()])
    return DiagnosticArray(header=Header(stamp=stamp), status=[status])


def joint_values(msg: JointState, names: Sequence[str], fields: Sequence[str],
                 what: str = "joint_states") -> np.ndarray:
    """The model card's joint layout from one JointState that names every joint: for each of
    ``names`` in turn, its ``fields`` ("position", "velocity"), [len(names) * len(fields)]."""
    merger = JointStateMerger(names, fields, what)
    merged = merger.update(msg, 0.0)
    if merged is None:
        raise ValueError(merger.describe_missing(msg.name))
    return merged[0]


def twist_message(fields: Sequence[str], command: np.ndarray, header: Optional[Header] = None):
    """A geometry_msgs/Twist (TwistStamped when ``header`` is given) with each named field
    ("linear.x", "angular.z", ...) set from the command, the others zero."""
    twist = Twist()
    for name, value in zip(fields, np.asarray(command, dtype=np.float64).reshape(-1)):
        part, axis = name.split(".")
        setattr(getattr(twist, part), axis, float(value))
    return twist if header is None else TwistStamped(header=header, twist=twist)


def goal_joint_values(msg, names: Sequence[str], fields: Sequence[str], what: str = "goal_state") -> np.ndarray:
    """A JointGoal in the model card's joint layout: its positions, and zero velocities (a goal
    is a state to come to rest in)."""
    positions = select_joints(msg.name, msg.position, names, what)
    columns = [positions if f == "position" else np.zeros_like(positions) for f in fields]
    return np.stack(columns, axis=1).reshape(-1)

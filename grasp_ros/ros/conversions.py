"""ROS messages <-> numpy, at the node's boundary (no cv_bridge).

Every function that reads a message raises ``ValueError`` with the reason when the message
cannot be used, so the node can report it instead of crashing.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Optional, Sequence

import numpy as np
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Path
from sensor_msgs.msg import Image
from std_msgs.msg import Float64MultiArray, Header
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

IMAGE_CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1}
"""Supported sensor_msgs/Image encodings and their channels (8 bits each)."""


# -- time -------------------------------------------------------------------------------------

def seconds(stamp: Time) -> float:
    return stamp.sec + 1e-9 * stamp.nanosec


def stamp_seconds(stamp: Time) -> Optional[float]:
    """A header stamp in seconds; None for the zero stamp (unstamped: the receiver's "now").
    Raises ValueError for what no clock produces: negative seconds, nanosec >= 1e9."""
    if stamp.sec < 0 or not 0 <= stamp.nanosec < 1_000_000_000:
        raise ValueError(f"invalid stamp sec={stamp.sec} nanosec={stamp.nanosec} (sec must be "
                         ">= 0 and nanosec < 1e9)")
    if stamp.sec == 0 and stamp.nanosec == 0:
        return None
    return seconds(stamp)


def to_time(t: float) -> Time:
    sec = math.floor(t)
    return Time(sec=int(sec), nanosec=min(int(round((t - sec) * 1e9)), 999_999_999))


def to_duration(t: float) -> Duration:
    sec = math.floor(t)
    return Duration(sec=int(sec), nanosec=min(int(round((t - sec) * 1e9)), 999_999_999))


# -- images -----------------------------------------------------------------------------------

def image_to_rgb(msg: Image, size: int = 0) -> np.ndarray:
    """RGB uint8 [H, W, 3] of an rgb8, bgr8 or mono8 image; ``size`` > 0 demands size x size."""
    channels = IMAGE_CHANNELS.get(msg.encoding)
    if channels is None:
        raise ValueError(f"unsupported image encoding {msg.encoding!r}; expected one of "
                         f"{', '.join(IMAGE_CHANNELS)}")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ValueError(f"empty image ({width}x{height})")
    if step < width * channels:
        raise ValueError(f"image step {step} is less than width x channels = {width * channels}")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size != step * height:
        raise ValueError(f"image has {data.size} bytes of data, expected step x height = {step * height}")
    if size and (height, width) != (size, size):
        raise ValueError(f"image is {width}x{height}, the model expects {size}x{size}")
    pixels = data.reshape(height, step)[:, :width * channels].reshape(height, width, channels)
    if msg.encoding == "bgr8":
        pixels = pixels[..., ::-1]
    elif channels == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return np.ascontiguousarray(pixels)


def rgb_to_image(pixels: np.ndarray, encoding: str = "rgb8", header: Optional[Header] = None) -> Image:
    """sensor_msgs/Image of an RGB uint8 [H, W, 3] array, written as rgb8, bgr8 or mono8."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected RGB uint8 [H, W, 3], got {pixels.dtype} {pixels.shape}")
    if encoding not in IMAGE_CHANNELS:
        raise ValueError(f"unsupported image encoding {encoding!r}; expected one of "
                         f"{', '.join(IMAGE_CHANNELS)}")
    if encoding == "bgr8":
        pixels = pixels[..., ::-1]
    elif encoding == "mono8":
        pixels = pixels.mean(axis=2, keepdims=True).round().astype(np.uint8)
    pixels = np.ascontiguousarray(pixels)
    height, width, channels = pixels.shape
    return Image(header=header or Header(), height=height, width=width, encoding=encoding,
                 is_bigendian=0, step=width * channels, data=pixels.tobytes())


# -- joints -----------------------------------------------------------------------------------

def select_joints(names: Sequence[str], positions: Sequence[float], wanted: Sequence[str],
                  what: str = "message") -> np.ndarray:
    """Positions [J] of the ``wanted`` joints, in that order.

    A message without names must list exactly the wanted joints' positions, in order.
    """
    positions = np.asarray(positions, dtype=np.float64)
    names = list(names)
    if not names:
        if positions.size != len(wanted):
            raise ValueError(f"{what} has no joint names and {positions.size} positions; "
                             f"expected {len(wanted)} for {list(wanted)}")
        selected = positions
    else:
        if len(names) != positions.size:
            raise ValueError(f"{what} has {len(names)} names but {positions.size} positions")
        repeated = sorted(n for n, count in Counter(names).items() if count > 1)
        if repeated:
            raise ValueError(f"{what} names joint(s) {repeated} more than once")
        index = {name: i for i, name in enumerate(names)}
        missing = [n for n in wanted if n not in index]
        if missing:
            raise ValueError(f"{what} lacks joint(s) {missing} (has {names})")
        selected = positions[[index[n] for n in wanted]]
    if not np.isfinite(selected).all():
        raise ValueError(f"{what} has non-finite positions {selected.tolist()}")
    return selected


# -- commands ---------------------------------------------------------------------------------

def command_message(command: np.ndarray) -> Float64MultiArray:
    """The command for a ros2_control forward_command_controller: one value per joint."""
    return Float64MultiArray(data=[float(v) for v in np.asarray(command).reshape(-1)])


def trajectory_message(joint_names: Sequence[str], actions: np.ndarray, period: float,
                       header: Header, positions: Optional[np.ndarray] = None) -> JointTrajectory:
    """The planned commands as a JointTrajectory: point t at t x period, velocities = action t.

    ``positions`` [N+1, J] (predicted positions, first = now), when given with one column per
    joint, fill each point's positions with where the model expects the joints after that action.
    """
    actions = np.asarray(actions, dtype=np.float64).reshape(len(actions), -1)
    fill = positions is not None and positions.shape == (len(actions) + 1, len(joint_names))
    points = []
    for t, action in enumerate(actions):
        point = JointTrajectoryPoint(velocities=[float(v) for v in action],
                                     time_from_start=to_duration(t * period))
        if fill:
            point.positions = [float(v) for v in positions[t + 1]]
        points.append(point)
    return JointTrajectory(header=header, joint_names=list(joint_names), points=points)


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

"""Synthetic rosbag2 recordings for the importer's tests (rosbags only, no ROS install)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from grasp_ros.data.rosbag import JOINT_TYPE, SIM_EPISODE_TOPIC, _topic
from grasp_ros.models.card import TWIST_FIELDS


def write_rosbag(path: str | Path, images: np.ndarray, joints: np.ndarray, commands: np.ndarray,
                 period_s: float = 0.1, joint_names: Sequence[str] = ("x", "y"),
                 image_topic: str = "image", joint_topic: str = "joint_states",
                 command_topic: str = "command", *, storage: str = "sqlite3",
                 velocities: Optional[np.ndarray] = None, times_s: Optional[np.ndarray] = None,
                 twist_fields: Optional[Sequence[str]] = None,
                 trajectory_joints: Optional[Sequence[str]] = None,
                 episode_marks: Sequence[int] = (), image_delay_s: float = 0.0,
                 compression: str = "") -> None:
    """Write a rosbag2 like a recording of the sim: frame i and its joint state at ``times_s[i]``
    (default every ``period_s`` from 1.7e9 s), command i half-way to frame i+1 (so it drives that
    step), and a std_msgs/String on SIM_EPISODE_TOPIC just before each frame in ``episode_marks``.
    ``image_delay_s``: frames are received this long after they were taken (their header stamp).

    images uint8 [T+1, S, S, 3] (rgb8), joints [T+1, J] positions (``velocities`` alike, or
    none), commands [T, A]: Float64MultiArray, or Twist with ``twist_fields`` set to the A values,
    or JointTrajectory with one point of velocities for ``trajectory_joints`` (every other command
    lists them in reverse order: a reader must go by name).
    ``storage``: sqlite3 or mcap; ``compression``: "file" or "message" (zstd, as ``ros2 bag
    record --compression-mode`` writes it), or none.
    """
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    T = store.types
    Header, Time = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]
    plugin = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}[storage]
    times = (1_700_000_000 + np.arange(len(images)) * period_s) if times_s is None else np.asarray(times_s)
    ns = np.round(np.asarray(times, np.float64) * 1e9).astype(np.int64)

    def header(t: int):
        return Header(stamp=Time(sec=int(t) // 10**9, nanosec=int(t) % 10**9), frame_id="camera")

    def command(values, i: int):
        if trajectory_joints is not None:
            order = list(range(len(trajectory_joints)))[:: -1 if i % 2 else 1]
            return T["trajectory_msgs/msg/JointTrajectory"](
                header=header(0), joint_names=[trajectory_joints[k] for k in order],
                points=[T["trajectory_msgs/msg/JointTrajectoryPoint"](
                    positions=np.zeros(0), velocities=np.asarray(values, np.float64)[order],
                    accelerations=np.zeros(0), effort=np.zeros(0),
                    time_from_start=T["builtin_interfaces/msg/Duration"](sec=0, nanosec=0))])
        if twist_fields is None:
            return T["std_msgs/msg/Float64MultiArray"](
                layout=T["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0), data=np.asarray(values, np.float64))
        parts = {f: 0.0 for f in TWIST_FIELDS} | dict(zip(twist_fields, map(float, values)))
        Vector = T["geometry_msgs/msg/Vector3"]
        return T["geometry_msgs/msg/Twist"](
            linear=Vector(x=parts["linear.x"], y=parts["linear.y"], z=parts["linear.z"]),
            angular=Vector(x=parts["angular.x"], y=parts["angular.y"], z=parts["angular.z"]))

    kinds = {"image": ("sensor_msgs/msg/Image", image_topic), "joints": (JOINT_TYPE, joint_topic),
             "command": ("trajectory_msgs/msg/JointTrajectory" if trajectory_joints is not None else
                         "geometry_msgs/msg/Twist" if twist_fields else "std_msgs/msg/Float64MultiArray",
                         command_topic),
             "marks": ("std_msgs/msg/String", SIM_EPISODE_TOPIC)}
    writer = Writer(Path(path), version=9, storage_plugin=plugin)
    if compression:
        writer.set_compression(CompressionMode[compression.upper()], CompressionFormat.ZSTD)
    with writer:
        conns = {role: writer.add_connection(_topic(topic), kind, typestore=store)
                 for role, (kind, topic) in kinds.items() if role != "marks" or len(episode_marks)}

        def write(role: str, t: int, msg) -> None:
            writer.write(conns[role], int(t), store.serialize_cdr(msg, kinds[role][0]))

        for i in range(len(images)):
            if i in episode_marks:
                write("marks", ns[i] - 1, T["std_msgs/msg/String"](data='{"event": "start"}'))
            h, w = images[i].shape[:2]
            write("image", ns[i] + round(image_delay_s * 1e9), T["sensor_msgs/msg/Image"](
                header=header(ns[i]), height=h, width=w, encoding="rgb8", is_bigendian=0, step=3 * w,
                data=np.ascontiguousarray(images[i]).reshape(-1)))
            write("joints", ns[i], T[JOINT_TYPE](
                header=header(ns[i]), name=list(joint_names), position=np.asarray(joints[i], np.float64),
                velocity=np.zeros(0) if velocities is None else np.asarray(velocities[i], np.float64),
                effort=np.zeros(0)))
            if i < len(commands):
                write("command", (ns[i] + ns[i + 1]) // 2 if i + 1 < len(ns) else ns[i], command(commands[i], i))

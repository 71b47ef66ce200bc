"""Datasets from a robot's rosbag2: camera image, joint states and command topics, aligned in time.

Every camera frame becomes a frame of one episode. Its joint state is the joint_states message
nearest in time (a measurement, sampled), and the action of the transition from frame i to i+1
comes from the command signal held between them (commands are zero-order held, as ros2_control
and the sim node apply them): ``align="end"`` takes the command in force when frame i+1 was
taken (right for a sim that applies the latest command at each tick), ``align="mean"`` its time
average over the interval (right for a robot that moves continuously under the command).
Times are the bag's receive timestamps, one clock for all topics.

Messages: sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) or sensor_msgs/CompressedImage;
sensor_msgs/JointState (positions, optionally selected by name); commands as
std_msgs/Float64MultiArray or Float32MultiArray (the controller's ``command``), or
geometry_msgs/Twist / TwistStamped (linear x, y).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from tqdm import tqdm

from .dataset import DatasetError, TransitionData

COMMAND_TYPES = ("std_msgs/msg/Float64MultiArray", "std_msgs/msg/Float32MultiArray",
                 "geometry_msgs/msg/Twist", "geometry_msgs/msg/TwistStamped")
ALIGNMENTS = ("end", "mean")


def read_rosbag(path: str | Path, image_topic: str = "image", joint_topic: str = "joint_states",
                command_topic: str = "command", image_size: int = 64,
                joint_names: Sequence[str] | None = None, align: str = "end",
                progress: bool = True) -> TransitionData:
    """One episode [1, T+1] from the bag at ``path`` (a rosbag2 folder)."""
    from rosbags.highlevel import AnyReader, AnyReaderError
    from rosbags.typesys import Stores, get_typestore

    if align not in ALIGNMENTS:
        raise ValueError(f"align must be one of {ALIGNMENTS}, got {align!r}")
    source = f"rosbag {str(path)!r}"
    topics = {"image": _topic(image_topic), "joints": _topic(joint_topic), "command": _topic(command_topic)}
    series: dict[str, tuple[list[int], list]] = {k: ([], []) for k in topics}
    try:
        with AnyReader([Path(path)], default_typestore=get_typestore(Stores.ROS2_KILTED)) as reader:
            by_topic = {c.topic: c for c in reader.connections}
            missing = [t for t in topics.values() if t not in by_topic]
            if missing:
                raise DatasetError(f"{source}: no topic {missing}; it has {sorted(by_topic)}")
            role_of = {topic: role for role, topic in topics.items()}
            convert = {"image": lambda m, t: _image(m, t, image_size),
                       "joints": lambda m, t: _joints(m, joint_names),
                       "command": _command}
            connections = [by_topic[t] for t in topics.values()]
            for conn, stamp, raw in tqdm(reader.messages(connections=connections), desc="read bag",
                                         unit="msg", disable=not progress,
                                         total=sum(c.msgcount for c in connections)):
                role = role_of[conn.topic]
                msg = reader.deserialize(raw, conn.msgtype)
                series[role][0].append(stamp)
                series[role][1].append(convert[role](msg, conn.msgtype))
    except (AnyReaderError, FileNotFoundError) as exc:
        raise DatasetError(f"{source}: cannot read the bag ({type(exc).__name__}: {exc})") from exc
    data = align_streams(series, align, source)
    data.meta.update({"image_size": image_size, "source": f"rosbag:{Path(path).name}",
                      "topics": topics, "align": align, "joint_names": list(joint_names or [])})
    data.validate(source)
    return data


def align_streams(series: dict[str, tuple[list[int], list]], align: str, source: str) -> TransitionData:
    """Frames (with their nearest joint state) and the held command between consecutive frames."""
    t_img, t_joint, t_cmd = (np.asarray(series[k][0], np.int64) for k in ("image", "joints", "command"))
    for role, stamps in (("image", t_img), ("joint state", t_joint), ("command", t_cmd)):
        if len(stamps) == 0:
            raise DatasetError(f"{source}: no {role} messages")
    # Frames start where the held command is known: for "end" at the last frame before the
    # first command (that command drives the step after it), for "mean" at the first frame after.
    if align == "end":
        first = max(int(np.searchsorted(t_img, t_cmd[0], side="right")) - 1, 0)
    else:
        first = int(np.searchsorted(t_img, t_cmd[0], side="left"))
    if len(t_img) - first < 2:
        raise DatasetError(f"{source}: fewer than 2 camera frames after the first command")
    t_img = t_img[first:]
    frames = _stack(series["image"][1][first:], "camera frames", source)
    joints = _stack(series["joints"][1], "joint states", source).astype(np.float32)
    commands = _stack(series["command"][1], "commands", source).astype(np.float32)
    if align == "end":
        held = np.searchsorted(t_cmd, t_img[1:], side="left") - 1   # last command strictly before
        actions = commands[np.maximum(held, 0)]
    else:
        actions = np.stack([_held_mean(t_cmd, commands, a, b) for a, b in zip(t_img[:-1], t_img[1:])])
    meta = {"env": "", "max_step": None, "seed": None,
            "frame_period_s": float(np.median(np.diff(t_img))) * 1e-9}
    return TransitionData(frames[None], joints[_nearest(t_joint, t_img)][None], actions[None], meta)


def _nearest(stamps: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Index of the stamp nearest to each query (stamps sorted)."""
    if len(stamps) == 1:
        return np.zeros(len(queries), np.int64)
    right = np.clip(np.searchsorted(stamps, queries), 1, len(stamps) - 1)
    left = right - 1
    return np.where(queries - stamps[left] <= stamps[right] - queries, left, right)


def _stack(items: list, what: str, source: str) -> np.ndarray:
    shapes = sorted({np.shape(x) for x in items})
    if len(shapes) != 1:
        raise DatasetError(f"{source}: {what} change shape during the bag: {shapes[:4]}")
    return np.stack(items)


def _held_mean(t_cmd: np.ndarray, commands: np.ndarray, start: int, end: int) -> np.ndarray:
    """Time average over [start, end) of the zero-order-held command signal."""
    if end <= start:
        return commands[max(np.searchsorted(t_cmd, start, side="right") - 1, 0)]
    cuts = np.concatenate([[start], t_cmd[(t_cmd > start) & (t_cmd < end)], [end]])
    idx = np.maximum(np.searchsorted(t_cmd, cuts[:-1], side="right") - 1, 0)
    return (commands[idx] * np.diff(cuts)[:, None]).sum(0) / (end - start)


def _topic(name: str) -> str:
    return name if name.startswith("/") else "/" + name


def _image(msg, msgtype: str, size: int) -> np.ndarray:
    if msgtype.endswith("CompressedImage"):
        bgr = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f"cannot decode a compressed image ({msg.format!r})")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    else:
        channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
        if msg.encoding not in channels:
            raise DatasetError(f"image encoding {msg.encoding!r} not supported; use one of {sorted(channels)}")
        c = channels[msg.encoding]
        rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
        pixels = rows[:, : msg.width * c].reshape(msg.height, msg.width, c)
        to_rgb = {"rgb8": None, "bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB,
                  "bgra8": cv2.COLOR_BGRA2RGB, "mono8": cv2.COLOR_GRAY2RGB}[msg.encoding]
        rgb = pixels if to_rgb is None else cv2.cvtColor(pixels, to_rgb)
    h, w = rgb.shape[:2]
    side = min(h, w)   # centre square crop, then scale to the model's input size
    rgb = rgb[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
    if side != size:
        rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(rgb)


def _joints(msg, names: Sequence[str] | None) -> np.ndarray:
    position = np.asarray(msg.position, np.float64)
    if not names:
        return position
    index = {n: i for i, n in enumerate(msg.name)}
    missing = [n for n in names if n not in index]
    if missing:
        raise DatasetError(f"joint_states lacks joints {missing}; it has {list(msg.name)}")
    return position[[index[n] for n in names]]


def _command(msg, msgtype: str) -> np.ndarray:
    if msgtype.endswith("MultiArray"):
        return np.asarray(msg.data, np.float64)
    twist = msg.twist if msgtype.endswith("TwistStamped") else msg
    if msgtype.endswith("Twist") or msgtype.endswith("TwistStamped"):
        return np.array([twist.linear.x, twist.linear.y])
    raise DatasetError(f"command type {msgtype} not supported; use one of {COMMAND_TYPES}")


def write_rosbag(path: str | Path, images: np.ndarray, joints: np.ndarray, commands: np.ndarray,
                 period_s: float = 0.1, joint_names: Sequence[str] = ("x", "y"),
                 image_topic: str = "image", joint_topic: str = "joint_states",
                 command_topic: str = "command") -> None:
    """Write a small rosbag2 (sqlite3) like a recording of the sim: frames and joint states every
    ``period_s``, command i half a period after frame i (so it drives the step to frame i+1).

    images uint8 [T+1, S, S, 3] (rgb8), joints [T+1, J], commands [T, A] (Float64MultiArray).
    """
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    Image, JointState = store.types["sensor_msgs/msg/Image"], store.types["sensor_msgs/msg/JointState"]
    Header, Time = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    Array = store.types["std_msgs/msg/Float64MultiArray"]
    Layout = store.types["std_msgs/msg/MultiArrayLayout"]
    period = int(round(period_s * 1e9))
    start = 1_700_000_000 * 10**9

    def header(ns: int):
        return Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9), frame_id="camera")

    with Writer(Path(path), version=9) as writer:
        conns = {name: writer.add_connection(_topic(topic), kind, typestore=store)
                 for name, topic, kind in (("image", image_topic, Image.__msgtype__),
                                           ("joints", joint_topic, JointState.__msgtype__),
                                           ("command", command_topic, Array.__msgtype__))}
        for i in range(len(images)):
            ns = start + i * period
            h, w = images[i].shape[:2]
            image = Image(header=header(ns), height=h, width=w, encoding="rgb8", is_bigendian=0,
                          step=3 * w, data=np.ascontiguousarray(images[i]).reshape(-1))
            state = JointState(header=header(ns), name=list(joint_names),
                               position=np.asarray(joints[i], np.float64),
                               velocity=np.zeros(0), effort=np.zeros(0))
            writer.write(conns["image"], ns, store.serialize_cdr(image, Image.__msgtype__))
            writer.write(conns["joints"], ns, store.serialize_cdr(state, JointState.__msgtype__))
            if i < len(commands):
                command = Array(layout=Layout(dim=[], data_offset=0),
                                data=np.asarray(commands[i], np.float64))
                writer.write(conns["command"], ns + period // 2,
                             store.serialize_cdr(command, Array.__msgtype__))

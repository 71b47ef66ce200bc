"""Datasets from a robot's rosbag2 recordings: camera image, joint state and command topics,
aligned in time and cut into episodes.

Bags. ``read_rosbag`` takes bags (rosbag2 folders, sqlite3 or mcap; or bare ``.mcap``/``.db3``
files) and folders that hold bags (searched recursively, in name order, hidden entries left
out). Each bag is read as its own stream: no episode spans two bags. Times are each bag's
receive timestamps, one clock for all its topics (``ros2 bag record`` and ``grasp-ros record``
both stamp on receipt).

Alignment. Every camera frame is a frame. Its joint state is the joint_states message nearest in
time (a measurement, sampled): by header stamps when the camera and joint_states both stamp theirs
on one clock (``joint_pairing`` in each bag's metadata), and the frame then counts as taken when
that joint state was received (a frame can arrive late, after rendering or compression; a
command sent in the meantime must not count as in force before it); else by receive time. The action of the transition from frame i to i+1 comes from
the command signal held between them (commands are zero-order held, as ros2_control and the sim
node apply them): ``align="end"`` takes the command in force when frame i+1 was taken (right for
a sim that applies the latest command at each tick), ``align="mean"`` its time average over the
interval (right for a robot that moves continuously under the command). Frames before the first
command are dropped.

Episodes. A transition is not learned from (the stream is cut there) when

* the recording paused: two frames, or a frame and its nearest joint state, lie more than
  ``gap`` seconds apart, or the command in force is older than ``gap`` (its publisher stopped;
  a robot's watchdog would have stopped the robot). Default: ``GAP_PERIODS`` periods (medians)
  of the bag's slowest of the three topics;
* a joint value or the command is not finite (NaN, inf) at either frame;
* the robot was reset: a joint position moved more than ``reset_jump`` (the joints' units; one
  value for every joint, or a value per joint by name, as joints in m and rad need) between the
  two frames. Off by default;
* a continuous joint (``continuous_joints``: an angle wrapping at +-pi, a base's yaw) turned
  across +-pi between the two frames (a step the model would learn as a 2 pi jump);
* a message arrived on ``episode_topic`` between the two frames (any type; default the sim
  node's ``/grasp_sim/episode``, which reports every episode start and end), when the bag has it.
  Reports that give their sim time (JSON ``"t"``, the sim node's) are placed by it when frames
  are paired by header stamps: the report at t cuts before the frame of t, and after it too
  where a frame is stamped t (it may show either episode).

``TransitionData`` holds episodes of one length, so the pieces are cut into episodes of
``episode_steps`` transitions (consecutive episodes share a frame) and the leftovers dropped;
without ``episode_steps`` every piece is an episode and all must have the same length.

Messages. Images: sensor_msgs/Image or CompressedImage, made the model's S x S input on read by
``grasp_ros.models.preprocess`` (only S x S frames are kept, in an array sized from the bag's
message count). Joints: sensor_msgs/JointState; ``joint_fields`` (position, velocity)
per joint, name-major: [j0.f0, j0.f1, j1.f0, ...] (``models.joint_layout``, the model card's). Commands:
std_msgs/Float64MultiArray or Float32MultiArray (the controller's ``command``; actions
"data[i]"), or geometry_msgs/Twist / TwistStamped, whose fields are named (``twist_fields``,
e.g. ("linear.x", "angular.z")); the default "auto" keeps those of linear.x, linear.y, angular.z
that are not zero throughout the episodes, which is right for differential-drive and holonomic bases
alike and never leaves the model an action the data never moved. Or trajectory_msgs/JointTrajectory
driving joints by velocity (what the controller's ``joint_trajectory`` output and the arm sim
take): the actions are its first point's velocities, named by its joints (in the first command's
order; later ones are read by name).

A camera faster than the robot's control (``frame_period``): one frame per period of the camera's
own clock is kept, the one nearest each multiple of the period from the first, and a step's
action is the command held over the whole period; the dataset's period is then ``frame_period``.

Metadata written (besides ``TransitionData``'s env, image_size, max_step, seed): source, crop,
bags (per bag: path, storage, message counts per topic, frames, frames_used, episodes, cuts by
cause, gap_s), topics, align, split (episode_steps, gap_s, reset_jump, episode_topic),
joint_names, joint_fields, joint_columns, action_names, command_type (the commands' message
type), action_kind, action_units (Twist), unused_nonzero_command_fields, frames, frames_used,
frames_dropped, cuts, frame_period_s (the median frame period in receive time, s) and period
(the model's step, s: the steady period of the camera's header stamps, its own clock, when every
bag's frames carry them (``steady_period``); else frame_period_s).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Mapping, NamedTuple, Optional, Sequence, Union

import numpy as np
import yaml
from tqdm import tqdm

from ..mcap_checksums import BagDamaged, check_bag_checksums
from ..models.card import JOINT_FIELDS, TRAJECTORY_UNITS, TWIST_FIELDS
from ..models.joint_layout import column_labels, position_columns
from ..models.joint_states import JointStateMerger, select_joints
from ..models.preprocess import decode_compressed, decode_raw, prepare_image
from ..models.text import quote
from ..timebase import stamp_ns
from .dataset import DatasetError, TransitionData
from .episodes import episode_starts, frames_used, gather, segments

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
JOINT_TYPE = "sensor_msgs/msg/JointState"
COMMAND_TYPES = ("std_msgs/msg/Float64MultiArray", "std_msgs/msg/Float32MultiArray",
                 "geometry_msgs/msg/Twist", "geometry_msgs/msg/TwistStamped",
                 "trajectory_msgs/msg/JointTrajectory")
ALIGNMENTS = ("end", "mean")
PLANAR_TWIST = ("linear.x", "linear.y", "angular.z")
"""The Twist fields ``twist_fields="auto"`` chooses from: a base moving in the plane."""
SIM_EPISODE_TOPIC = "/grasp_sim/episode"
GAP_PERIODS = 5
BAG_FILES = (".mcap", ".db3")
PathsLike = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]


@dataclass
class _Stream:
    """One bag's messages, converted; stamps in ns (receive time), sorted."""

    t_img: np.ndarray
    frames: np.ndarray          # uint8 [F, S, S, 3]
    t_joint: np.ndarray
    joints: np.ndarray          # [M, J * fields]
    t_cmd: np.ndarray
    commands: np.ndarray        # [C, A] (MultiArray) or [C, 6] (Twist: TWIST_FIELDS)
    t_marks: np.ndarray         # episode_topic messages
    info: dict = field(default_factory=dict)
    h_img: Optional[np.ndarray] = None     # header stamps beside t_img, t_joint (None: some unset)
    h_joint: Optional[np.ndarray] = None
    h_marks: Optional[np.ndarray] = None   # the episode reports' own times ("t"), sorted


@dataclass(frozen=True)
class RosbagImport:
    """How ``read_rosbag`` reads bags: topics, the model's input, and where episodes are cut (the
    module's docstring describes each rule)."""

    image_topic: str = "image"
    joint_topic: str = "joint_states"
    command_topic: str = "command"
    image_size: int = 64
    """S: frames are made the model's S x S input."""
    joint_names: Optional[Sequence[str]] = None
    """The joints read, in this order (default: every joint the topic names, in order of first
    appearance); later bags are read by the first one's."""
    align: str = "end"
    """A step's action from the held command: "end" (in force at the next frame) or "mean" (its
    time average over the step)."""
    progress: bool = True
    _: KW_ONLY
    joint_fields: Sequence[str] = ("position",)
    twist_fields: Union[str, Sequence[str]] = "auto"
    episode_steps: Optional[int] = None
    """Transitions per episode (default: every piece between cuts is an episode)."""
    gap: Optional[float] = None
    """Seconds apart that count as a pause (default: ``GAP_PERIODS`` periods)."""
    reset_jump: Optional[Union[float, Mapping[str, float]]] = None
    """One limit for every joint's position step, or a limit by joint name (others not cut)."""
    episode_topic: Optional[str] = SIM_EPISODE_TOPIC
    crop: str = "center"
    frame_period: Optional[float] = None
    """Seconds per step when the camera is faster than the robot's control (one frame kept per
    period)."""
    continuous_joints: Sequence[str] = ()
    action_names: Optional[Sequence[str]] = None
    """For JointTrajectory commands, the joints whose velocities are the actions, taken by name
    in this order (default: the first command's joints)."""


FIRST_FRAMES = 4096
"""Model inputs allocated before the frames are read (48 MB at 64 px), then doubled as needed."""
UNREADABLE_FRAMES = 0.01
"""Camera frames that cannot be decoded (a truncated JPEG from a driver's glitch, a frame cut
short when recording stopped) are left out, and collect warns, while they are at most this
fraction of the bag's frames; more, and the camera's stream is taken for unreadable."""


def read_rosbag(paths: PathsLike, options: Optional[RosbagImport] = None, **fields) -> TransitionData:
    """Episodes [N, T+1, ...] from the bags named by ``paths`` (see the module's docstring), read
    as ``options`` says (default: ``RosbagImport(**fields)``, e.g. ``image_topic="/camera"``).

    Raises ``DatasetError`` naming the bag and the problem (missing topic, wrong type, no
    messages, too few frames), ``ValueError`` for bad options.
    """
    if options is None:
        options = RosbagImport(**fields)
    elif fields:
        raise TypeError("read_rosbag: give the options or their fields, not both")
    fields = _check_options(options)
    topics = {"image": _topic(options.image_topic), "joints": _topic(options.joint_topic),
              "command": _topic(options.command_topic)}
    marks = _topic(options.episode_topic) if options.episode_topic else None
    bags = find_bags(paths)
    pieces, infos, command_type = [], [], None
    joint_names = options.joint_names
    action_names = list(options.action_names) if options.action_names else None
    for bag in bags:
        stream = _read_bag(bag, topics, marks, options.image_size, options.crop, joint_names, fields,
                           options.progress, action_names)
        kind = stream.info.pop("command_type")
        if command_type is not None and _command_kind(kind) != _command_kind(command_type):
            raise DatasetError(f"rosbag {str(bag)!r}: commands are {kind}, earlier bags' {command_type}")
        command_type = command_type or kind
        commanded = stream.info.pop("action_names")
        action_names = action_names or commanded   # later bags are read by the first one's names
        names = stream.info.pop("joint_names")
        joint_names = joint_names or names   # later bags are read by the first one's names
        unknown = sorted(set(options.continuous_joints) - set(joint_names))
        if unknown:
            raise ValueError(f"continuous joints {unknown} are not among the joints {list(joint_names)}")
        if options.continuous_joints and "position" not in fields:
            raise ValueError("continuous joints need 'position' among the joint fields")
        positions = position_columns(joint_names, fields)
        wraps = position_columns(joint_names, fields, options.continuous_joints)
        jumps = _jump_limits(options.reset_jump, joint_names)
        pieces.append(_episodes(stream, options, positions, wraps, jumps, f"rosbag {str(bag)!r}"))
        infos.append(stream.info)
        del stream
    data = _combine(pieces, infos, options.episode_steps)
    data.actions, action_names, unused = _select_actions(data.actions, command_type, options.twist_fields,
                                                         topics["command"], action_names)
    data.meta = _metadata(options, bags, infos, topics, marks, joint_names, fields, action_names,
                          command_type, unused)
    for info in infos:
        info.pop("frame_period_s")
    data.validate(f"rosbag {', '.join(repr(str(b)) for b in bags)}")
    return data


def _metadata(options: RosbagImport, bags: list[Path], infos: list[dict], topics: dict[str, str],
              marks: Optional[str], joint_names: Sequence[str], fields: tuple[str, ...],
              action_names: list[str], command_type: str, unused: list[str]) -> dict:
    """The dataset's metadata (the module's docstring lists it), from the bags' ``infos``."""
    used = sum(i["frames_used"] for i in infos)
    read = sum(i["frames"] for i in infos)
    periods = [i["frame_period_s"] for i in infos if i["frame_period_s"]]
    period = float(np.median(periods)) if periods else 0.0
    # The model's step is the camera's period in the robot's own time when the frames carry it.
    sensor = [i["sensor_period_s"] for i in infos if i.get("sensor_period_s")]
    step = float(np.median(sensor)) if sensor and len(sensor) == len(infos) else period
    step = options.frame_period or step
    cuts = {k: sum(i["cuts"][k] for i in infos) for k in infos[0]["cuts"]}
    return {
        "env": "", "max_step": None, "seed": None, "image_size": options.image_size, "crop": options.crop,
        "source": "rosbag:" + ",".join(b.name for b in bags), "bags": infos,
        "topics": {**topics, "episode": marks if any(i["messages"].get(marks) for i in infos) else None},
        "align": options.align,
        "split": {"episode_steps": options.episode_steps, "gap_s": options.gap,
                  "reset_jump": options.reset_jump, "episode_topic": marks},
        "joint_names": list(joint_names), "joint_fields": list(fields),
        "continuous_joints": list(options.continuous_joints),
        "joint_columns": column_labels(joint_names, fields),
        "action_names": action_names, "command_type": command_type, "unused_nonzero_command_fields": unused,
        **COMMAND_KIND_METADATA[_command_kind(command_type)],
        "frames": read, "frames_used": used, "frames_dropped": read - used, "cuts": cuts,
        "frames_thinned": sum(i.get("frames_thinned", 0) for i in infos),
        "frame_period_s": period, "period": step}


def find_bags(paths: PathsLike) -> list[Path]:
    """The bags named by ``paths``: rosbag2 folders (they hold metadata.yaml), bare .mcap/.db3
    files, and the bags inside any other folder (recursively, in name order)."""
    given = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not given:
        raise DatasetError("no rosbag given")
    found: list[Path] = []
    for path in map(Path, given):
        if not path.exists():
            raise DatasetError(f"rosbag {str(path)!r}: cannot read the bag (not found)")
        if path.is_file() or (path / "metadata.yaml").exists():
            if path.is_file() and path.suffix not in BAG_FILES:
                raise DatasetError(f"rosbag {str(path)!r}: not a bag (a rosbag2 folder, .mcap or .db3)")
            found.append(path)
            continue
        inside = _bags_in(path)
        if not inside:
            raise DatasetError(f"{str(path)!r} holds no rosbag2 (no metadata.yaml, .mcap or .db3 in it)")
        found += inside
    unique = {p.resolve(): p for p in reversed(found)}   # a bag named twice is read once
    return [p for p in found if unique.get(p.resolve()) is p]


def bag_storage(bag: Path) -> str:
    """sqlite3 or mcap: how the bag ``bag`` (a rosbag2 folder, or a bare file) stores its messages.
    A folder's metadata.yaml says; else the file names do, compressed ones (``ros2 bag record
    --compression-mode file``: ``*.db3.zstd``) too."""
    metadata = bag / "metadata.yaml"
    if metadata.is_file():
        try:
            info = yaml.safe_load(metadata.read_text())["rosbag2_bagfile_information"]
            if info["storage_identifier"] in ("sqlite3", "mcap"):
                return info["storage_identifier"]
        except (OSError, ValueError, yaml.YAMLError, KeyError, TypeError):
            pass   # the reader names what is wrong with the bag; here the file names decide
    files = [bag] if bag.is_file() else list(bag.iterdir()) if bag.is_dir() else []
    return "sqlite3" if any(f.name.removesuffix(".zstd").endswith(".db3") for f in files) else "mcap"


def _bags_in(folder: Path) -> list[Path]:
    bags = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):   # hidden: e.g. grasp-ros record's unfinished bags
            continue
        if entry.is_dir():
            bags += [entry] if (entry / "metadata.yaml").exists() else _bags_in(entry)
        elif entry.suffix in BAG_FILES:
            bags.append(entry)
    return bags


def _check_options(options: RosbagImport) -> tuple[str, ...]:
    """The joint fields, once the options are checked."""
    if options.align not in ALIGNMENTS:
        raise ValueError(f"align must be one of {ALIGNMENTS}, got {options.align!r}")
    fields = tuple(options.joint_fields)
    if not fields or not set(fields) <= set(JOINT_FIELDS) or len(set(fields)) != len(fields):
        raise ValueError(f"joint fields must be among {JOINT_FIELDS}, each once, got {list(fields)}")
    if options.twist_fields != "auto":
        named = list(options.twist_fields)
        if not named or not set(named) <= set(TWIST_FIELDS) or len(set(named)) != len(named):
            raise ValueError(f"twist fields must be 'auto' or among {TWIST_FIELDS}, each once, got {named}")
    if options.episode_steps is not None and options.episode_steps < 1:
        raise ValueError(f"episode_steps must be >= 1, got {options.episode_steps}")
    if options.gap is not None and not options.gap > 0:
        raise ValueError(f"gap must be > 0 seconds (inf: never cut at pauses), got {options.gap}")
    limits = options.reset_jump.values() if isinstance(options.reset_jump, Mapping) else [options.reset_jump]
    if options.reset_jump is not None and not (limits and all(v > 0 for v in limits)):
        raise ValueError(f"reset_jump must be > 0, got {options.reset_jump}")
    if options.reset_jump is not None and "position" not in fields:
        raise ValueError("reset_jump needs 'position' among the joint fields")
    return fields


def _read_bag(bag: Path, topics: dict[str, str], marks: Optional[str], size: int, crop: str,
              joint_names: Optional[Sequence[str]], fields: tuple[str, ...], progress: bool,
              action_names: Optional[Sequence[str]] = None) -> _Stream:
    """Every message of the three topics (and the episode topic) of one bag, converted."""
    from rosbags.highlevel import AnyReader, AnyReaderError
    from rosbags.rosbag2 import ReaderError
    from rosbags.typesys import Stores, get_typestore

    source = f"rosbag {str(bag)!r}"
    try:
        check_bag_checksums(bag)
        with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_KILTED)) as reader:
            by_topic: dict[str, list] = {}
            for conn in reader.connections:
                by_topic.setdefault(conn.topic, []).append(conn)
            missing = [t for t in topics.values() if t not in by_topic]
            if missing:
                raise DatasetError(f"{source}: no topic {missing}; it has {sorted(by_topic)}")
            kinds = {role: _one_type(by_topic[t], t, source) for role, t in topics.items()}
            for role, allowed in (("image", IMAGE_TYPES), ("joints", (JOINT_TYPE,)), ("command", COMMAND_TYPES)):
                if kinds[role] not in allowed:
                    raise DatasetError(f"{source}: {topics[role]} is {kinds[role]}; expected one of {list(allowed)}")
            counts = {t: sum(c.msgcount for c in by_topic[t]) for t in topics.values()}
            empty = [t for t, n in counts.items() if n == 0]
            if empty:
                raise DatasetError(f"{source}: no messages on {empty}")
            roles = {t: role for role, t in topics.items()}
            if marks in by_topic:
                roles[marks] = "marks"
            connections = [c for t in roles for c in by_topic[t]]
            stamps: dict[str, list[int]] = {role: [] for role in ("image", "joints", "command", "marks")}
            values: dict[str, list] = {"command": []}
            # Grown as frames come (below): the metadata's count is a claim, and a bag whose
            # metadata.yaml said 10^12 frames asked for 10.9 PiB at once (an adversarial audit).
            frames = np.empty((min(max(counts[topics["image"]], 1), FIRST_FRAMES), size, size, 3), np.uint8)
            joint_reader = _JointReader(joint_names, fields)
            command_reader = _CommandReader(kinds["command"], action_names)
            headers: dict[str, list] = {"image": [], "marks": []}   # the sensors' own stamps
            cameras: dict[tuple[int, int], int] = {}    # frame sizes (width, height) as sent
            read = {t: 0 for t in roles}
            unreadable: list[str] = []           # camera frames that could not be decoded
            for conn, stamp, raw in tqdm(reader.messages(connections=connections), desc=f"read {bag.name}",
                                         unit="msg", disable=not progress,
                                         total=max(0, sum(c.msgcount for c in connections))):
                role = roles[conn.topic]
                read[conn.topic] += 1
                stamps[role].append(stamp)
                if role == "marks":   # its time, and the sim time a sim's report gives
                    headers["marks"].append(_report_time(reader, raw, conn.msgtype))
                    continue
                try:
                    msg = reader.deserialize(raw, conn.msgtype)
                    if role == "image":
                        n = len(stamps["image"]) - 1
                        if n == len(frames):   # more than the first allocation, or the metadata said
                            frames = np.concatenate([frames, np.empty_like(frames[: max(n, 1)])])
                        frames[n], camera = _image(msg, conn.msgtype, size, crop)
                        cameras[camera] = cameras.get(camera, 0) + 1
                        headers["image"].append(stamp_ns(msg.header.stamp))
                    elif role == "joints":
                        joint_reader.add(msg, stamp)
                    else:
                        values["command"].append(command_reader(msg))
                except DatasetError as exc:
                    if role != "image":
                        raise DatasetError(f"{source}: {conn.topic} message {read[conn.topic]}: {exc}") from exc
                    stamps["image"].pop()        # left out; too many of them fail the import below
                    unreadable.append(f"message {read[conn.topic]}: {exc}")
    except (AnyReaderError, ReaderError, BagDamaged, FileNotFoundError) as exc:
        # A file of a bag recorded with message compression holds compressed messages, which
        # only the bag's metadata.yaml says how to read.
        hint = ("; a bag recorded with compression is read from its folder (with its "
                "metadata.yaml), not from one of its files"
                if bag.is_file() and (bag.parent / "metadata.yaml").exists() else "")
        raise DatasetError(f"{source}: cannot read the bag ({type(exc).__name__}: {exc}){hint}") from exc
    if len(unreadable) > UNREADABLE_FRAMES * read[topics["image"]]:
        raise DatasetError(f"{source}: {topics['image']}: {len(unreadable)} of {read[topics['image']]} frames "
                           f"cannot be read, more than {UNREADABLE_FRAMES:.0%}; the first, {unreadable[0]}")
    frames = frames[: len(stamps["image"])]
    t_img, order = _sorted(stamps["image"])
    if order is not None:
        frames = frames[order]
    t_joint, joints, joint_headers = joint_reader.records(topics["joints"], source)
    t_cmd, commands, _ = _sorted_values(stamps["command"], values["command"], "commands", source)
    h_img = _headers(headers["image"], order)
    h_joint = _headers(joint_headers, None)
    info = {"path": str(bag), "storage": bag_storage(bag), "messages": read, "frames": len(t_img),
            "joint_names": joint_reader.names, "command_type": kinds["command"],
            "action_names": command_reader.names,
            "sensor_period_s": _sensor_period(h_img),
            "camera_sizes": [[w, h, n] for (w, h), n in sorted(cameras.items(), key=lambda kv: -kv[1])],
            # stamps that jump back in receive order: a driver's broken stamps (pairing by them,
            # and a controller's clock checks, go wrong); counted before they are sorted
            "stamps_back": {"image": stamps_back(headers["image"]), "joints": stamps_back(joint_headers)},
            "frames_unreadable": len(unreadable), "unreadable": unreadable[:3]}
    h_marks = None if None in headers["marks"] else np.sort(np.asarray(headers["marks"], np.int64))
    return _Stream(t_img, frames, t_joint, joints, t_cmd, commands, np.sort(np.asarray(stamps["marks"], np.int64)),
                   info, h_img, h_joint, h_marks)


def _report_time(reader, raw, msgtype: str) -> Optional[int]:
    """The sim time (ns) of an episode report: a std_msgs/String of JSON with "t" in seconds (the
    sim node's); None for anything else."""
    if msgtype != "std_msgs/msg/String":
        return None
    try:
        t = json.loads(reader.deserialize(raw, msgtype).data)["t"]
        return round(float(t) * 1e9)
    except (ValueError, KeyError, TypeError):
        return None


def _headers(stamps_ns: list[int], order: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """Header stamps in receive order (``order`` sorts them so), or None when they are unset: a
    zero stamp after the first message. A simulation's clock starts at 0, so its first message
    may be stamped 0 (a lock-step recording that catches the first step is)."""
    t = np.asarray(stamps_ns, np.int64)
    if not len(t) or (t[1:] == 0).any():
        return None
    return t if order is None else t[order]


def stamps_back(stamps_ns: Sequence[int]) -> int:
    """Header stamps (receive order) that go back by more than five typical steps (and 1 ms):
    not the jitter of publishers that share a topic, but a driver whose stamps jump back."""
    t = np.asarray([x for x in stamps_ns if x], np.int64)
    steps = np.diff(t)
    forward = steps[steps > 0]
    if not len(forward):
        return 0
    return int((steps < -max(5 * np.median(forward), 1_000_000)).sum())


def _sensor_period(stamps: Optional[np.ndarray]) -> Optional[float]:
    """The camera's frame period from its header stamps (s), or None when they are unset or not
    increasing. It is the robot's (or the sim's) own time: a bag recorded from a simulation run
    faster than real time, or in lock step, has receive times that say nothing about it."""
    if stamps is None or len(stamps) < 2:
        return None
    period = steady_period(np.sort(stamps)) * 1e-9
    return period if period > 0 else None


def steady_period(times: np.ndarray) -> float:
    """A sensor's period from its sorted times: the mean of the intervals within half and one
    and a half of their median, so that pauses and dropped frames do not count, while stamps
    that fall on a coarser clock (a 30 Hz camera on 200 Hz physics: 30 and 35 ms in turn, median
    35) average to the true period."""
    steps = np.diff(np.asarray(times, dtype=np.float64))
    if not len(steps):
        return 0.0
    typical = float(np.median(steps))
    steady = steps[(steps >= 0.5 * typical) & (steps <= 1.5 * typical)]
    return float(steady.mean()) if len(steady) else typical


def _one_type(connections: list, topic: str, source: str) -> str:
    kinds = sorted({c.msgtype for c in connections})
    if len(kinds) != 1:
        raise DatasetError(f"{source}: {topic} carries several types {kinds}")
    return kinds[0]


def _sorted(stamps: list[int]) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Stamps as int64, sorted, and the order that sorts them (None when already sorted)."""
    t = np.asarray(stamps, np.int64)
    if np.all(t[1:] >= t[:-1]):
        return t, None
    order = np.argsort(t, kind="stable")
    return t[order], order


def _sorted_values(stamps: list[int], items: list, what: str,
                   source: str) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Stamps and values sorted by stamp, and the order that sorted them (None: already sorted)."""
    t, order = _sorted(stamps)
    shapes = sorted({np.shape(x) for x in items})
    if len(shapes) != 1:
        raise DatasetError(f"{source}: {what} change shape during the bag: {shapes[:4]}")
    values = np.asarray(items, np.float64)
    return t, values if order is None else values[order], order


def _jump_limits(reset_jump, joint_names: Sequence[str]) -> Optional[np.ndarray]:
    """``reset_jump`` as one limit per joint, in ``joint_names``' order (inf: not cut); None: off."""
    if reset_jump is None:
        return None
    if not isinstance(reset_jump, Mapping):
        return np.full(len(joint_names), float(reset_jump))
    unknown = sorted(set(reset_jump) - set(joint_names))
    if unknown:
        raise ValueError(f"reset_jump names joints {unknown} that are not among the joints {list(joint_names)}")
    return np.array([float(reset_jump.get(name, np.inf)) for name in joint_names])


def _episodes(s: _Stream, options: RosbagImport, positions: Sequence[int], wraps: Sequence[int],
              jumps: Optional[np.ndarray], source: str) -> dict[str, np.ndarray]:
    """One bag's episodes: frames aligned with joints and held commands, cut (module docstring).
    ``positions``, ``wraps``: the joint columns of every joint's position, of the continuous ones';
    ``jumps``: each joint's reset_jump (``_jump_limits``)."""
    t_img, nearest, offset, h_img = _frame_times(s)
    kept, s.info["frames_thinned"] = np.arange(len(t_img)), 0   # thinned: by frame_period, not a cut
    if options.frame_period:
        kept = _keep_one_frame_per_period(t_img, h_img, options.frame_period, source)
        s.info["frames_thinned"] = len(t_img) - len(kept)
        t_img, nearest, offset = t_img[kept], nearest[kept], offset[kept]
        h_img = None if h_img is None else h_img[kept]
    pairing = "receive time" if h_img is None else "header stamps"
    t_joint, t_cmd = s.t_joint, s.t_cmd
    # Frames start where the held command is known: for "end" at the last frame before the
    # first command (that command drives the step after it), for "mean" at the first frame after.
    if options.align == "end":
        first = max(int(np.searchsorted(t_img, t_cmd[0], side="right")) - 1, 0)
    else:
        first = int(np.searchsorted(t_img, t_cmd[0], side="left"))
    t, nearest, offset = t_img[first:], nearest[first:], offset[first:]
    h = None if h_img is None else h_img[first:]
    if len(t) < 2:
        raise DatasetError(f"{source}: fewer than 2 camera frames after the first command")
    if options.gap is None:     # (the frames kept: with frame_period, theirs)
        periods = [np.median(np.diff(x)) for x in (t_img, t_joint, t_cmd) if len(x) > 1]
        gap_ns = GAP_PERIODS * max(periods) if periods else np.inf
    else:
        gap_ns = options.gap * 1e9
    joints = s.joints[nearest]
    held = np.searchsorted(t_cmd, t[1:], side="left") - 1          # last command strictly before
    if options.align == "end":
        actions = s.commands[np.maximum(held, 0)]
    else:
        actions = _held_mean(t_cmd, s.commands, t[:-1], t[1:])
    cuts = _cuts(s, t, h, offset, joints, actions, sent=t_cmd[np.maximum(held, 0)], gap_ns=gap_ns,
                 reset_jump=jumps, positions=positions, wraps=wraps)
    runs = segments(~np.any(list(cuts.values()), axis=0))
    episodes = episode_starts(runs, options.episode_steps)
    s.info.update(frames_used=frames_used(len(t), episodes), episodes=len(episodes),
                  cuts={cause: int(cut.sum()) for cause, cut in cuts.items()},
                  gap_s=float(gap_ns) * 1e-9 if np.isfinite(gap_ns) else None,
                  longest_steps=max((b - a for a, b in runs), default=0), joint_pairing=pairing,
                  frame_period_s=float(np.median(np.diff(t))) * 1e-9)
    frames = s.frames[kept[first:]] if options.frame_period else s.frames[first:]
    if options.episode_steps is None:   # whole pieces, of any length: kept as lists until lengths are compared
        return {"images": [frames[a:a + n + 1].copy() for a, n in episodes],
                "joints": [joints[a:a + n + 1] for a, n in episodes],
                "actions": [actions[a:a + n] for a, n in episodes]}
    return {"images": gather(frames, episodes), "joints": gather(joints, episodes),
            "actions": gather(actions, episodes, per_transition=True)}


def _keep_one_frame_per_period(t_img: np.ndarray, h_img: Optional[np.ndarray], frame_period: float,
                               source: str) -> np.ndarray:
    """Indices of the frames kept for ``frame_period``: one per period of the camera's own clock
    (receive time without one), the frame nearest each multiple of the period from the first.
    Refuses a period shorter than the camera's or not a whole number of them."""
    clock = h_img if h_img is not None and np.all(np.diff(h_img) > 0) else t_img
    camera = steady_period(clock) * 1e-9
    if camera > 1.25 * frame_period:
        raise DatasetError(f"{source}: frame_period {frame_period:g} s is shorter than the camera's "
                           f"frame period, {camera:.4g} s")
    frames = frame_period / camera if camera > 0 else 1.0
    if abs(frames - round(frames)) > 0.1:     # the kept frames would alternate in spacing
        whole = max(1, math.floor(frames))
        raise DatasetError(f"{source}: frame_period {frame_period:g} s is {frames:.2f} of the "
                           f"camera's frame periods ({camera:.4g} s): steps would be uneven; "
                           f"choose a whole number of them, e.g. {whole * camera:.4g} or "
                           f"{(whole + 1) * camera:.4g} s")
    return _on_grid(clock, round(frame_period * 1e9))


def _cuts(s: _Stream, t: np.ndarray, h: Optional[np.ndarray], offset: np.ndarray, joints: np.ndarray,
          actions: np.ndarray, *, sent: np.ndarray, gap_ns: float, reset_jump: Optional[np.ndarray],
          positions: Sequence[int], wraps: Sequence[int]) -> dict[str, np.ndarray]:
    """Which transitions between the frames taken at ``t`` (header stamps ``h``, their joint
    states ``offset`` apart) each rule of the module's docstring cuts, by cause (the keys of the
    metadata's ``cuts``): [T] booleans each. ``sent``: when the command held over each step was."""
    frame_ok = offset <= gap_ns
    paused = (np.diff(t) > gap_ns) | (t[1:] - sent > gap_ns) | ~frame_ok[:-1] | ~frame_ok[1:]
    finite = np.isfinite(joints).all(axis=1)    # a driver's NaN velocity: that frame is left out
    non_finite = ~finite[:-1] | ~finite[1:] | ~np.isfinite(actions).all(axis=1)
    reset = np.zeros(len(t) - 1, bool)
    if reset_jump is not None and len(positions):     # each joint's limit on its own position
        reset = (np.abs(np.diff(joints[:, list(positions)], axis=0)) > reset_jump).any(axis=1)
    # A continuous joint's turn across +-pi: a step the model would learn as a 2 pi jump.
    wrapped = (np.abs(np.diff(joints[:, list(wraps)], axis=0)) > np.pi).any(axis=1) if len(wraps) else \
        np.zeros(len(t) - 1, bool)
    marked = _marked(s.t_marks, t)
    if h is not None and s.h_marks is not None and len(h) > 1:
        marked = reported_cuts(s.h_marks, h)
    return {"gap": paused, "non_finite": non_finite, "reset": reset, "wrap": wrapped, "episode_topic": marked}


def _combine(pieces: list[dict], infos: list[dict], steps: Optional[int]) -> TransitionData:
    """All bags' episodes in one TransitionData, each bag's arrays released once copied."""
    if steps is None:
        lengths = sorted({len(a) for p in pieces for a in p["actions"]})
        if len(lengths) > 1:
            raise DatasetError(f"the bags cut into episodes of different lengths {lengths[:6]} steps "
                               f"(pauses, resets, episode ends, several bags): pass episode_steps")
        pieces[:] = [{k: np.stack(v) if v else None for k, v in p.items()} for p in pieces]
    pieces[:] = [p for p in pieces if p["images"] is not None and len(p["images"])]   # in place: popped = freed
    n = sum(len(p["images"]) for p in pieces)
    if n == 0:
        longest = max(i["longest_steps"] for i in infos)
        causes = {k: sum(i["cuts"][k] for i in infos) for k in infos[0]["cuts"]}
        wanted = "" if steps is None else f" of {steps} steps"
        raise DatasetError(f"too few frames: no episode{wanted}; the longest stretch without a cut has "
                           f"{longest} steps (transitions cut: {causes})")
    out = {k: np.empty((n, *v.shape[1:]), v.dtype) for k, v in pieces[0].items()}
    at = 0
    while pieces:
        piece = pieces.pop(0)
        m = len(piece["images"])
        for k in out:
            out[k][at:at + m] = piece[k]
        at += m
    for info in infos:
        info.pop("longest_steps")
    return TransitionData(out["images"], out["joints"], out["actions"], {})


def _select_actions(commands: np.ndarray, command_type: str, twist_fields, topic: str,
                    names: Optional[Sequence[str]] = None):
    """(actions [N, T, A], action names, the nonzero command fields left out)."""
    if _command_kind(command_type) == "trajectory":
        return commands, list(names), []
    if not _is_twist(command_type):
        return commands, [f"data[{i}]" for i in range(commands.shape[-1])], []
    moved = [f for i, f in enumerate(TWIST_FIELDS) if np.any(commands[..., i] != 0)]
    names = [f for f in PLANAR_TWIST if f in moved] if twist_fields == "auto" else list(twist_fields)
    if not names:
        raise DatasetError(f"the Twist commands on {topic} are zero throughout the frames used: nothing "
                           f"to learn actions from")
    index = [TWIST_FIELDS.index(f) for f in names]
    return commands[..., index], names, [f for f in moved if f not in names]


def _is_twist(command_type: str) -> bool:
    return "Twist" in command_type


def _command_kind(command_type: str) -> str:
    """"twist", "trajectory" or "array": commands of one kind can share a dataset."""
    if _is_twist(command_type):
        return "twist"
    return "trajectory" if command_type.endswith("JointTrajectory") else "array"


COMMAND_KIND_METADATA = {"twist": {"action_kind": "twist", "action_units": "m/s, rad/s"},
                         "trajectory": {"action_kind": "velocity", "action_units": TRAJECTORY_UNITS},
                         "array": {"action_units": "as recorded (units not given: collect --action-units)"}}
"""The metadata each kind of command gives the actions (an array's units: ``--action-units``)."""


def _nearest(stamps: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Index of the stamp nearest to each query (stamps sorted)."""
    if len(stamps) == 1:
        return np.zeros(len(queries), np.int64)
    right = np.clip(np.searchsorted(stamps, queries), 1, len(stamps) - 1)
    left = right - 1
    return np.where(queries - stamps[left] <= stamps[right] - queries, left, right)


def reported_cuts(reports: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The transitions between frames stamped ``h`` that episode reports of their own times
    ``reports`` (sorted; the sim's JSON "t") cut, however late each was received. A report at t
    concerns the frame of t (the sim's shows the next episode's start): the step into it. A
    robot's frame stamped at its report's very time may show the episode before instead (an
    outside arm's: 8 of 12 resets learned as motion), so the step out of such a frame is cut too."""
    period = np.median(np.diff(h))
    marked = _marked(reports - period // 2, h)
    at_frame = reports[_nearest_distance(h, reports) <= period // 10]
    return marked | _marked(at_frame + period // 2, h)


def _nearest_distance(t: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """How far each query lies from its nearest time in ``t`` (sorted, at least one)."""
    right = np.clip(np.searchsorted(t, queries), 1, len(t) - 1)
    return np.minimum(np.abs(queries - t[right - 1]), np.abs(t[right] - queries))


def _marked(marks: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per transition of frames at times ``t``: a mark lies in (t[i], t[i + 1]]."""
    return (np.searchsorted(marks, t[1:], side="right") - np.searchsorted(marks, t[:-1], side="right")) > 0


def _frame_times(s: _Stream) -> tuple[np.ndarray, np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """When each frame was taken, on the bag's receive clock (ns); the index of its joint state;
    their time apart (ns); and the frames' header stamps where they paired them (else None).

    By header stamps when the camera and joint_states stamp theirs on one clock (paired stamps lie
    within half a frame): a frame's joint state is the one measured nearest to it, and the frame
    was taken when that small, fast message was received (plus their stamps' difference), not when
    the frame itself arrived, late after rendering or encoding. Else by receive time.
    """
    if s.h_img is not None and s.h_joint is not None and len(s.h_img) > 1:
        by_stamp = np.argsort(s.h_joint, kind="stable")
        nearest = by_stamp[_nearest(s.h_joint[by_stamp], s.h_img)]
        apart = s.h_img - s.h_joint[nearest]
        if np.median(np.abs(apart)) <= np.median(np.abs(np.diff(s.h_img))) / 2:
            taken = s.t_joint[nearest] + apart
            order = np.argsort(taken, kind="stable")
            stamps = s.h_img
            if np.any(order != np.arange(len(order))):   # frames that arrived out of order
                s.frames, nearest, apart, taken, stamps = (x[order] for x in (s.frames, nearest, apart, taken, stamps))
            return taken, nearest, np.abs(apart), stamps
    nearest = _nearest(s.t_joint, s.t_img)
    return s.t_img, nearest, np.abs(s.t_joint[nearest] - s.t_img), None


def _on_grid(times: np.ndarray, period_ns: int) -> np.ndarray:
    """Indices of the frames nearest to times[0] + k * period (k = 0, 1, ...), each at most half
    a period from its time (none near one: a pause, which the gap rule then cuts), in order."""
    targets = np.arange(times[0], times[-1] + period_ns // 2 + 1, period_ns)
    nearest = _nearest(times, targets)
    near = np.abs(times[nearest] - targets) <= period_ns // 2
    return np.unique(nearest[near])


def _held_mean(t_cmd: np.ndarray, commands: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Time average over each [start, end) of the zero-order-held command signal (starts at or
    after the first command), from its running integral: O(F + C), not O(F x C)."""
    rel = (t_cmd - t_cmd[0]).astype(np.float64)
    integral = np.concatenate([np.zeros((1, commands.shape[1])),
                               np.cumsum(commands[:-1] * np.diff(rel)[:, None], axis=0)])

    def at(times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = np.maximum(np.searchsorted(t_cmd, times, side="right") - 1, 0)
        return integral[k] + commands[k] * ((times - t_cmd[k]).astype(np.float64))[:, None], k

    (i_start, k_start), (i_end, _) = at(start), at(end)
    width = (end - start).astype(np.float64)[:, None]
    return np.where(width > 0, (i_end - i_start) / np.maximum(width, 1.0), commands[k_start])


def _topic(name: str) -> str:
    return name if name.startswith("/") else "/" + name


def _image(msg, msgtype: str, size: int, crop: str = "center") -> tuple[np.ndarray, tuple[int, int]]:
    """The model's input RGB uint8 [size, size, 3] of an Image or CompressedImage message, by the
    path the controller node takes (``grasp_ros.models.preprocess``), and the frame's (width,
    height) as sent."""
    try:
        if msgtype.endswith("CompressedImage"):
            rgb = decode_compressed(msg.format, msg.data)
        else:
            rgb = decode_raw(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)
        return prepare_image(rgb, size, crop), (int(rgb.shape[1]), int(rgb.shape[0]))
    except ValueError as exc:
        raise DatasetError(str(exc)) from exc


class _JointMessage(NamedTuple):
    name: tuple
    position: np.ndarray
    velocity: np.ndarray
    stamp: int          # header stamp, ns


MAX_JOINTS = 1000
"""Joints a topic may name in all when collect takes every joint it names (a humanoid has tens):
guards against a stray message naming thousands, each of which would become a dataset column."""


class _JointReader:
    """JointState messages -> [J * len(fields)] name-major records, the joints picked by name:
    ``names``, or every joint the topic names, in order of first appearance (a message without
    names is read by position). Messages that each name some of the joints (several publishers
    on one topic) are merged as the node merges them (``JointStateMerger``): a record per
    message once every joint has been named, stamped with the oldest header stamp of its parts."""

    def __init__(self, names: Optional[Sequence[str]], fields: tuple[str, ...]):
        self.names = list(names) if names else None
        self.fields = fields
        self._messages: list[tuple[int, _JointMessage]] = []     # (receive stamp, message) as read
        self._name_lists: dict[tuple, tuple] = {}                # one copy of each list of names

    def add(self, msg, stamp: int) -> None:
        """Keep what a record needs of ``msg`` (compactly: a long bag has many)."""
        name = tuple(msg.name)
        name = self._name_lists.setdefault(name, name)
        self._messages.append((stamp, _JointMessage(
            name, np.asarray(msg.position, np.float64),
            np.asarray(msg.velocity if "velocity" in self.fields else (), np.float64), stamp_ns(msg.header.stamp))))

    def records(self, topic: str, source: str) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """(receive stamps [M], records [M, J * fields], header stamps: each record's newest
        joint's), in receive order."""
        order = sorted(range(len(self._messages)), key=lambda i: self._messages[i][0])
        if self.names is None:
            self.names = self._names_seen()
            if len(self.names) > MAX_JOINTS:
                raise DatasetError(f"{source}: {topic} names {len(self.names)} joints in all, more than "
                                   f"{MAX_JOINTS} (a stray message?): choose them with --joint-names")
        merger = JointStateMerger(self.names, self.fields, "joint_states", keep_nonfinite=True)
        stamps, records, headers = [], [], []
        for i in order:
            stamp, msg = self._messages[i]
            try:
                merged = merger.update(msg, msg.stamp)
            except ValueError as exc:
                raise DatasetError(f"{source}: {topic} message {i + 1}: {exc}") from exc
            if merged is None:
                continue
            # Paired with frames by its newest joint, as the controller pairs; a record that a
            # later message of the same stamp completes (publishers sharing the topic) gives way.
            if headers and merger.newest and headers[-1] == merger.newest:     # (0: unstamped)
                stamps.pop(), records.pop(), headers.pop()
            stamps.append(stamp)
            records.append(merged[0])
            headers.append(merger.newest)
        if not records:
            raise DatasetError(f"{source}: {topic} lacks joints {merger.missing}: no message names "
                               f"them (the messages name {quote(self._names_seen())})")
        return np.asarray(stamps, np.int64), np.asarray(records, np.float64), headers

    def _names_seen(self) -> list[str]:
        names: dict[str, None] = {}
        for _, msg in self._messages:
            names.update(dict.fromkeys(msg.name))
        if names:
            return list(names)
        return [f"j{i}" for i in range(len(self._messages[0][1].position))] if self._messages else []


class _CommandReader:
    """A command -> its values: a MultiArray's data, a Twist's six (TWIST_FIELDS order; chosen
    once all is read), or a JointTrajectory's first point's velocities, in the joint order
    ``names`` (default: the first command's)."""

    def __init__(self, msgtype: str, names: Optional[Sequence[str]] = None):
        self.msgtype = msgtype
        self.names = list(names) if names else None

    def __call__(self, msg) -> np.ndarray:
        if self.msgtype.endswith("MultiArray"):
            return np.asarray(msg.data, np.float64)
        if self.msgtype.endswith("JointTrajectory"):
            return self._trajectory(msg)
        twist = msg.twist if self.msgtype.endswith("TwistStamped") else msg
        return np.array([twist.linear.x, twist.linear.y, twist.linear.z,
                         twist.angular.x, twist.angular.y, twist.angular.z])

    def _trajectory(self, msg) -> np.ndarray:
        if not len(msg.points) or not len(msg.points[0].velocities):
            raise DatasetError("a JointTrajectory command without velocities in its first point: the "
                               "actions are those velocities (position-only trajectories are not read)")
        if self.names is None:
            if not len(msg.joint_names):
                raise DatasetError("a JointTrajectory command without joint_names")
            self.names = list(msg.joint_names)
        try:
            return select_joints(msg.joint_names, msg.points[0].velocities, self.names, "JointTrajectory")
        except ValueError as exc:
            raise DatasetError(str(exc)) from exc

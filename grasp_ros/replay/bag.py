"""A recorded control run, read from a rosbag2 and checked: the controller's inputs, its cycles.

``read_recording(path)`` reads a bag (rosbag2 folder, or a bare .mcap / .db3) of a running
controller, as ``grasp-ros record`` or ``ros2 bag record`` writes it, and returns a
``Recording``: the input messages still serialised (camera image raw or compressed,
joint_states, goals) with their receive times and header stamps, one ``Cycle`` per recorded
PlanDiagnostics, the reports of the plans that came late (``~/late_plans``), the /clock it saw, and the controller's parameters when the recorder stored
them. Anything that makes the bag unusable raises ``BagError`` naming the bag and the problem:
a missing topic, a topic of another type, a truncated or unreadable file, no goal, cycle stamps
(or /clock) going back.

Topics (each the first of its candidates present, unless named): the camera ``/image`` or
``/image/compressed``, ``/joint_states``, the goal ``/grasp_controller/goal_state`` or the sim's
``/goal_state`` (and ``_image`` alike), ``/grasp_controller/plan_diagnostics``, ``/clock``.
"""
from __future__ import annotations

import importlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..control import Status, reasons
from ..mcap_checksums import BagDamaged, check_bag_checksums
from ..data.rosbag import bag_storage
from ..models.text import shorten
from ..ros.params import BY_NAME, NODE_NAME
from ..ros.recorder import PARAMETERS_KEY
from ..timebase import NS, stamp_ns

DIAGNOSTICS_TYPE = "grasp_ros/msg/PlanDiagnostics"
CLOCK_TYPE = "rosgraph_msgs/msg/Clock"
INPUT_TYPES = {
    "image": ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"),
    "joints": ("sensor_msgs/msg/JointState",),
    "goal_state": ("grasp_ros/msg/JointGoal",),
    "goal_image": ("sensor_msgs/msg/Image",),
}
CONTROLLER = "/" + NODE_NAME
"""The controller's node, whose name its own topics are under."""
CANDIDATES = {
    "image": ("/image", "/image/compressed"),
    "joints": ("/joint_states",),
    "goal_state": (f"{CONTROLLER}/goal_state", "/goal_state"),
    "goal_image": (f"{CONTROLLER}/goal_image", "/goal_image"),
    "diagnostics": (f"{CONTROLLER}/plan_diagnostics",),
    "late_plans": (f"{CONTROLLER}/late_plans",),
    "clock": ("/clock",),
}
REPORTS = ("diagnostics", "late_plans")
"""The roles of the controller's PlanDiagnostics topics."""
GOALS = ("goal_state", "goal_image")
WATCHDOG_TEXT = f"CLOCK: {reasons.WATCHDOG}"
"""How the controller's clock watchdog's reports begin: they are not cycles (no timer tick)."""


class BagError(Exception):
    """The bag cannot be replayed; the message names the bag and the problem."""


@dataclass
class Input:
    """One recorded input message, still serialised."""

    role: str            # image, joints, goal_state or goal_image
    received: int        # ns, the bag's receive time
    stamp: int           # ns, its header stamp
    raw: bytes


@dataclass
class Cycle:
    """One recorded control cycle (a PlanDiagnostics message)."""

    time: int            # ns, the cycle's clock (the message's header stamp)
    received: int        # ns, the bag's receive time of the message
    status: int
    status_text: str
    planner: str
    iterations: int
    cost: float
    residual: float
    novelty: float
    goal_novelty: float
    goal_distance: float
    observation_age: float
    solve_time: float
    command_delay: float
    command: np.ndarray
    warm_started: bool = False   # True on a first recorded cycle: the recording began mid-run
    syncs: Optional[int] = None  # GRASP's syncs run (None: recorded before PlanDiagnostics had it)
    start_samples: Optional[int] = None  # GRASP's start samples drawn (None: the same)


@dataclass
class Recording:
    """What a bag holds of one controller's run (see the module docstring)."""

    path: Path
    storage: str
    topics: dict[str, tuple[str, str]]       # role -> (bag topic, message type)
    inputs: list[Input]                      # in receive order
    cycles: list[Cycle]                      # by stamp (``_in_stamp_order``)
    clock: np.ndarray                        # [N, 2] int64: receive time, clock value (ns)
    parameters: Optional[dict[str, Any]] = None
    """The recorded controller's parameter values (None: the bag does not say)."""
    parameters_node: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    late_plans: Optional[list[Cycle]] = None
    """The late plans' reports, each stamped with its cycle's time (None: the bag has no
    ``~/late_plans`` topic, so its FALLBACK cycles cannot be repeated)."""
    parameters_unset: Optional[tuple[str, ...]] = None
    """The recorded controller's parameters declared without a value, at their defaults (None:
    a bag recorded before the recorder listed them)."""
    compression: Optional[str] = None
    """How the bag's data is compressed, e.g. "zstd per file" (``ros2 bag record
    --compression-mode file``) or "zstd per message" (None: not compressed)."""
    checksums: int = 0
    """CRC-32s of the bag's MCAP files checked before it was read
    (``grasp_ros.mcap_checksums``). 0: it carries none (a sqlite3 bag, or an MCAP written
    without them), and a byte changed inside a message would replay as a changed input."""

    @property
    def image_transport(self) -> Optional[str]:
        """raw or compressed: how the bag's camera images come (None: no camera topic)."""
        if "image" not in self.topics:
            return None
        return "compressed" if self.topics["image"][1].endswith("CompressedImage") else "raw"

    @property
    def period(self) -> float:
        """The control period (s): the median spacing of the recorded cycles."""
        times = np.asarray([c.time for c in self.cycles], dtype=np.int64)
        return float(np.median(np.diff(times))) / NS if len(times) > 1 else math.nan


def message_class(msgtype: str):
    """The installed Python class of ``pkg/msg/Name``."""
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def read_recording(path, topics: Optional[dict[str, str]] = None) -> Recording:
    """The recording in the bag ``path``; ``topics`` names bag topics by role (image, joints,
    goal_state, goal_image, diagnostics, clock) where the defaults do not fit. Raises BagError."""
    from rosbags.rosbag2 import Reader

    path = Path(path)
    source = f"bag {str(path)!r}"
    if not path.exists():
        raise BagError(f"{source}: not found")
    if path.is_dir() and not (path / "metadata.yaml").exists():
        raise BagError(f"{source}: a folder without metadata.yaml: give the bag's .mcap or .db3 file "
                       "itself, or put its metadata.yaml back (ros2 bag reindex writes one)")
    try:
        checksums = check_bag_checksums(path)
    except (BagDamaged, OSError) as exc:
        raise BagError(f"{source}: {exc}") from exc
    try:
        with Reader(path) as reader:
            chosen = _choose_topics(reader, topics or {}, source)
            recording = _read(reader, path, chosen, source)
    except BagError:
        raise
    except Exception as exc:  # noqa: BLE001 -- a damaged file fails anywhere in rosbags or sqlite
        raise BagError(f"{source}: cannot read the bag ({type(exc).__name__}: {exc}); is it "
                       "truncated or damaged?") from exc
    _check(recording, source)
    recording.checksums = checksums
    return recording


def check_fed(recording: Recording, subscribed: Sequence[str]) -> None:
    """BagError when the controller reads an observation (``subscribed``: its input roles) that
    the bag has no topic for: it would be STALE throughout, its input under a name not looked for."""
    unfed = [role for role in ("image", "joints") if role in subscribed and role not in recording.topics]
    if unfed:
        role = unfed[0]
        raise BagError(
            f"bag {str(recording.path)!r}: the controller reads "
            f"{'a camera' if role == 'image' else 'joint_states'}, and the "
            f"bag has none among {', '.join(CANDIDATES[role])}: name the bag's topic with "
            f"--{'image' if role == 'image' else 'joint'}-topic")


def _choose_topics(reader, named: dict[str, str], source: str) -> dict[str, tuple[str, str]]:
    unknown = sorted(set(named) - set(CANDIDATES))
    if unknown:
        raise ValueError(f"unknown topic roles {unknown}; roles are {sorted(CANDIDATES)}")
    kinds: dict[str, set] = {}
    for conn in reader.connections:
        kinds.setdefault(conn.topic, set()).add(conn.msgtype)
    chosen = {}
    for role, candidates in CANDIDATES.items():
        wanted = ([named[role]] if role in named else list(candidates))
        present = [t for t in wanted if t in kinds]
        if not present:
            if role in named:
                raise BagError(f"{source}: no topic {named[role]!r} ({role}); it has {sorted(kinds)}")
            continue
        topic = present[0]
        if len(kinds[topic]) > 1:
            raise BagError(f"{source}: {topic} carries several types {sorted(kinds[topic])}")
        kind = next(iter(kinds[topic]))
        allowed = INPUT_TYPES.get(role) or ((DIAGNOSTICS_TYPE,) if role in REPORTS else (CLOCK_TYPE,))
        if kind not in allowed:
            raise BagError(f"{source}: {topic} ({role}) is {kind}; expected {' or '.join(allowed)}")
        chosen[role] = (topic, kind)
    for role in ("image", "joints"):
        if role not in chosen and role not in named:
            # A robot's own names (/camera/image_raw/compressed): the only topic of the type is it.
            taken = {topic for topic, _ in chosen.values()}
            only = [(t, next(iter(k))) for t, k in kinds.items()
                    if t not in taken and len(k) == 1 and next(iter(k)) in INPUT_TYPES[role]]
            if len(only) == 1:
                chosen[role] = only[0]
    if "diagnostics" not in chosen:
        raise BagError(f"{source}: no {CANDIDATES['diagnostics'][0]} topic: the bag must hold the "
                       f"controller's PlanDiagnostics (grasp-ros record records them; another name: "
                       f"--diagnostics-topic); it has {sorted(kinds)}")
    if not ({"image", "joints"} & set(chosen)):
        raise BagError(f"{source}: no observation topic (camera {' or '.join(CANDIDATES['image'])}, "
                       f"or {CANDIDATES['joints'][0]}; name yours with --image-topic or --joint-topic); "
                       f"it has {sorted(kinds)}")
    if not (set(GOALS) & set(chosen)):
        raise BagError(f"{source}: no goal topic (one of "
                       f"{', '.join(CANDIDATES['goal_state'] + CANDIDATES['goal_image'])}; name yours with "
                       f"--goal-state-topic or --goal-image-topic); it has {sorted(kinds)}")
    return chosen


def _read(reader, path: Path, chosen: dict[str, tuple[str, str]], source: str) -> Recording:
    from rclpy.serialization import deserialize_message

    role_of = {topic: role for role, (topic, _) in chosen.items()}
    classes = {role: message_class(kind) for role, (_, kind) in chosen.items()}
    connections = [c for c in reader.connections if c.topic in role_of]
    listed = {role: sum(c.msgcount for c in connections if c.topic == chosen[role][0]) for role in chosen}
    counts = {role: 0 for role in chosen}
    inputs, cycles, clock, late = [], [], [], []
    for conn, received, raw in reader.messages(connections=connections):
        role = role_of[conn.topic]
        counts[role] += 1
        raw = bytes(raw)
        try:
            msg = deserialize_message(raw, classes[role])
        except Exception as exc:  # noqa: BLE001 -- rclpy raises plain exceptions on bad CDR
            raise BagError(f"{source}: {conn.topic} message {counts[role]} does not decode as "
                           f"{conn.msgtype} ({type(exc).__name__}: {exc})") from exc
        if role == "clock":
            clock.append((received, stamp_ns(msg.clock)))
        elif role == "diagnostics":
            if msg.status != Status.INACTIVE and not msg.status_text.startswith(WATCHDOG_TEXT):
                cycles.append(cycle_from_message(msg, received, _defined_counts(conn)))
        elif role == "late_plans":
            late.append(cycle_from_message(msg, received, _defined_counts(conn)))
        else:
            inputs.append(Input(role, received, stamp_ns(msg.header.stamp), raw))
    short = {chosen[r][0]: (n, listed[r]) for r, n in counts.items() if n < listed[r]}
    if short:
        raise BagError(f"{source}: truncated: " + ", ".join(
            f"{t} holds {n} of the {m} messages its metadata lists" for t, (n, m) in short.items()))
    custom = getattr(getattr(reader, "storage", None), "metadata", None)
    custom = getattr(custom, "custom", None) or {}
    if not isinstance(custom, dict):
        raise BagError(f"{source}: its metadata's custom_data is a {type(custom).__name__}, not a map")
    parameters, node, unset = None, "", None
    if PARAMETERS_KEY in custom:
        try:
            document = json.loads(custom[PARAMETERS_KEY])
            parameters, node = dict(document["parameters"]), str(document["node"])
            unset = document.get("unset")
            if unset is not None and not (isinstance(unset, list) and all(isinstance(n, str) for n in unset)):
                raise ValueError(f"unset is {shorten(repr(unset), 80)}, not a list of names")
            unset = tuple(unset) if unset is not None else None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BagError(f"{source}: custom_data {PARAMETERS_KEY} is not the recorder's JSON ({exc})") from exc
    return Recording(path, bag_storage(path), chosen, inputs, cycles,
                     np.asarray(clock, dtype=np.int64).reshape(-1, 2), parameters, node,
                     {chosen[r][0]: n for r, n in counts.items()},
                     late if "late_plans" in chosen else None, unset, _compression(reader))


def _compression(reader) -> Optional[str]:
    mode, kind = getattr(reader, "compression_mode", None), getattr(reader, "compression_format", None)
    return f"{kind or 'unnamed format'} per {mode}" if mode else None


COUNTS = ("syncs", "start_samples")
"""PlanDiagnostics' planner counts that a replay repeats, each added to the message later than
the rest: a bag recorded before one has it as None."""


def cap_parameter(count: str) -> str:
    """GRASP's parameter that caps a plan at the recorded ``count`` (one of ``COUNTS``)."""
    return f"planner.max_{count}"


def _defined_counts(conn) -> tuple[str, ...]:
    """Which of ``COUNTS`` the PlanDiagnostics the bag recorded had (its stored definition;
    older ones decode alike, each missing field read from what was padding, always 0)."""
    definition = getattr(getattr(conn, "msgdef", None), "data", "") or ""
    fields = {tuple(line.split()[:2]) for line in definition.splitlines()}
    return tuple(name for name in COUNTS if ("uint32", name) in fields)


def cycle_from_message(msg, received: int, counts: tuple[str, ...] = COUNTS) -> Cycle:
    """The ``Cycle`` a PlanDiagnostics message reports, received at ``received`` (ns);
    ``counts``: which of ``COUNTS`` the message's definition has (``_defined_counts``)."""
    return Cycle(time=stamp_ns(msg.header.stamp), received=received, status=int(msg.status),
                 status_text=msg.status_text, planner=msg.planner, iterations=int(msg.iterations),
                 cost=msg.plan_cost, residual=msg.dynamics_residual, novelty=msg.observation_novelty,
                 goal_novelty=msg.goal_novelty, goal_distance=msg.goal_distance,
                 observation_age=msg.observation_age, solve_time=msg.solve_time,
                 command_delay=msg.command_delay, command=np.asarray(msg.command, dtype=np.float64),
                 warm_started=bool(msg.warm_started),
                 **{name: int(getattr(msg, name)) if name in counts else None for name in COUNTS})


def _in_stamp_order(cycles: list[Cycle], topic: str, source: str) -> list[Cycle]:
    """The cycles by stamp. Two neighbours' reports can reach a recorder swapped (seen at the
    start of a recording made under load), and that is put right; a cycle stamped at or before
    any other earlier one is a clock that went back (a restarted simulator) or a damaged bag."""
    top = None          # the newest-stamped cycle before the previous one
    for k in range(1, len(cycles)):
        if k >= 2 and (top is None or cycles[k - 2].time > cycles[top].time):
            top = k - 2
        if top is not None and cycles[k].time <= cycles[top].time:
            earlier = top
        elif cycles[k].time == cycles[k - 1].time:
            earlier = k - 1
        else:
            continue
        raise BagError(f"{source}: stamps out of order: cycle {k} of {topic} is stamped "
                       f"{cycles[k].time / NS:.9f} s, not after cycle {earlier} "
                       f"({cycles[earlier].time / NS:.9f} s): the clock went back (a restarted "
                       "simulator?) or the bag is damaged; record each run to a bag of its own")
    return sorted(cycles, key=lambda c: c.time)


def _check(recording: Recording, source: str) -> None:
    if not recording.cycles:
        raise BagError(f"{source}: no control cycles: {recording.topics['diagnostics'][0]} holds no "
                       "cycle's PlanDiagnostics")
    if not any(i.role in GOALS for i in recording.inputs):
        raise BagError(f"{source}: no goal: no message on "
                       + " or ".join(recording.topics[g][0] for g in GOALS if g in recording.topics))
    if not any(i.role in ("image", "joints") for i in recording.inputs):
        raise BagError(f"{source}: no observation: no message on "
                       + " or ".join(recording.topics[r][0] for r in ("image", "joints") if r in recording.topics))
    recording.cycles = _in_stamp_order(recording.cycles, recording.topics['diagnostics'][0], source)
    values = recording.clock[:, 1]
    back = next((k for k in range(1, len(values)) if values[k] < values[k - 1]), None)
    if back is not None:
        raise BagError(f"{source}: stamps out of order: /clock goes back from {values[back - 1] / NS:.9f} s "
                       f"to {values[back] / NS:.9f} s")
    sizes = {len(c.command) for c in recording.cycles}
    if len(sizes) > 1:
        raise BagError(f"{source}: the recorded commands change length ({sorted(sizes)})")
    _check_values(recording.cycles, recording.topics["diagnostics"][0], source)
    if recording.late_plans:
        _check_values(recording.late_plans, recording.topics["late_plans"][0], source)


MAX_SECONDS = float(2 ** 32)
"""Largest recorded age or delay (s) a bag may hold: two time bases (sim time from 0 against the
wall clock's 1.8e9 s) differ by less; beyond, nanoseconds leave an int64."""


def _check_values(cycles: list[Cycle], topic: str, source: str) -> None:
    """What the controller can never have reported, refused: a damaged or edited bag. A
    non-finite command (every command is finite), a planned cycle without an observation age, an
    age or delay beyond ``MAX_SECONDS`` (NaN and inf: none), iteration, sync or start sample
    counts beyond what the planner parameters allow."""
    limits = {"iterations": "planner.iterations", **{name: cap_parameter(name) for name in COUNTS}}
    most = {name: int(BY_NAME[param].range[1]) for name, param in limits.items()}
    known = {int(s) for s in Status}
    for k, c in enumerate(cycles):
        where = f"{source}: cycle {k} of {topic}"
        if c.status not in known:
            raise BagError(f"{where} has status {c.status}, which the controller never reports (a "
                           "damaged or edited bag)")
        if len(c.command) == 0:
            raise BagError(f"{where} has an empty command: the controller sends one every cycle, the "
                           "stop too (a damaged or edited bag)")
        if not np.isfinite(c.command).all():
            raise BagError(f"{where} has a non-finite command {c.command.tolist()}: the controller "
                           "never sends one (a damaged or edited bag)")
        if c.status in (Status.OK, Status.TRUNCATED) and not math.isfinite(c.observation_age):
            raise BagError(f"{where} planned ({Status(c.status).name}) with observation_age "
                           f"{c.observation_age}: a planned cycle's observation has an age (a damaged "
                           "or edited bag; the replay could not check its inputs)")
        for name in ("observation_age", "command_delay"):
            value = getattr(c, name)
            if math.isfinite(value) and abs(value) > MAX_SECONDS:
                raise BagError(f"{where}: {name} {value:g} s is beyond what a clock can give (a damaged "
                               "or edited bag)")
        for name, param in limits.items():
            count = getattr(c, name)
            if count is not None and count > most[name]:
                raise BagError(f"{where}: {count} {name} ({param} allows at most {most[name]}; a "
                               "damaged or edited bag)")

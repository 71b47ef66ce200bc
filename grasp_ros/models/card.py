"""The model card: what a world model needs from a robot and what it gives back.

A card travels with the model (in a checkpoint under ``"card"``, on a module as ``model.card``)
and is what the controller reads to decide what to subscribe to, how to prepare the inputs and
how to scale its commands, and what it checks at configure:

* ``image``: the camera the model encodes: side ``size`` of the square it sees, how a frame of
  any aspect is made square (``crop``), the topic.
* ``joints``: the joint names and the JointState fields (``position``, ``velocity``) the model
  encodes, in that layout (name-major: all fields of the first joint, then the next).
* ``actions``: names, count, bounds **in robot units** and the units themselves. The model and the
  planners work in the model's own action box (``model.action_low``/``high``, usually [-1, 1]);
  ``to_robot`` maps that box affinely onto the card's bounds at the command boundary.
* ``period``: seconds per planning step (0: unknown); the control rate should match it.
* ``provenance``, ``metrics``: where the training data came from and how well the model fits it
  (plain values, for people and ``grasp-ros info``).

A model without a card gets one derived from its contract attributes (``card_for``), so any
model that meets the contract still runs.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from .contract import WorldModelError
from .joint_layout import column_labels, position_columns
from .text import quote

CARD_FORMAT = "grasp_ros.model_card/1"
CROP_MODES = ("center", "stretch")
JOINT_FIELDS = ("position", "velocity")
ACTION_KINDS = ("velocity", "position", "effort", "twist", "other")
TWIST_FIELDS = tuple(f"{part}.{axis}" for part in ("linear", "angular") for axis in "xyz")
TRAJECTORY_UNITS = "joint velocities (rad/s, m/s)"
"""The units ``grasp-ros collect`` gives actions read from JointTrajectory commands."""


@dataclass(frozen=True)
class ImageInput:
    size: int
    """S: the model encodes S x S RGB frames."""
    crop: str = "center"
    """How a frame of another aspect becomes square: "center" crops the middle square, then
    resizes; "stretch" resizes the whole frame."""
    topic: str = "image"
    history: int = 1
    """Frames per observation: the newest and the K - 1 before it, one model period apart."""


@dataclass(frozen=True)
class JointInput:
    names: tuple[str, ...]
    fields: tuple[str, ...] = ("position",)
    topic: str = "joint_states"
    continuous: tuple[str, ...] = ()
    """Joints whose position is an angle that wraps at +-pi (a base's yaw, a wrist that turns
    for ever): the same pose every 2 pi. A goal on one is taken at its value nearest the
    measured one (``wrap_to_nearest``)."""

    def position_columns(self, names) -> list[int]:
        """Columns of the joint vector (``joint_layout``) holding the positions of ``names``."""
        return position_columns(self.names, self.fields, names)

    @property
    def dim(self) -> int:
        return len(self.names) * len(self.fields)

    @property
    def labels(self) -> list[str]:
        """A name for each value of the joint vector: the joint's, with its field where there
        are several ("elbow.velocity")."""
        if len(self.fields) == 1:
            return list(self.names)
        return column_labels(self.names, self.fields)


def decimal_bound(value: float, upper: bool) -> float:
    """A bound that may be a float32 value as the decimal it rounds from, where that lies inside
    it: 1.2 for 1.2000000476837158 (float32 data of a robot commanded up to 1.2, which a command
    clipped to the float32 value would exceed); the value itself where the decimal lies outside
    (0.699999988 for 0.7) or the value is no float32 (1.2 stays 1.2)."""
    value = float(value)
    if float(np.float32(value)) != value:
        return value
    typed = float(np.format_float_positional(np.float32(value), unique=True))
    return min(value, typed) if upper else max(value, typed)


def value_labels(joints: Optional[JointInput], count: int) -> list[str]:
    """``joints.labels`` where they name ``count`` values, else joint[i] (a card without them)."""
    if joints is not None and len(joints.labels) == count:
        return joints.labels
    return [f"joint[{i}]" for i in range(count)]


@dataclass(frozen=True)
class ActionOutput:
    names: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    units: str = "normalised"
    kind: str = "velocity"
    """What a command component is: velocity (joint or base velocities), position, effort,
    twist (a mobile base's Twist; ``names`` are Twist fields such as "linear.x"), other."""

    @property
    def count(self) -> int:
        return len(self.names)


def stop_warnings(names: Sequence[str], low: Sequence[float], high: Sequence[float]) -> list[str]:
    """A warning for each action whose range excludes zero: the data never commanded the robot
    to stop on it (its lowest speed is not a stop). The controller's stop is still exactly zero
    (``ControlLoop``), which the model then never saw."""
    return [f"action {name} ranges over [{lo:g}, {hi:g}], without zero: the recorded commands "
            "never stopped the robot on it, so the model never saw the stop the controller sends "
            "(zero, when stale, on errors, at deactivation); record rests too"
            for name, lo, hi in zip(names, low, high) if not lo <= 0.0 <= hi]


@dataclass(frozen=True)
class ModelCard:
    actions: ActionOutput
    image: Optional[ImageInput] = None
    joints: Optional[JointInput] = None
    period: float = 0.0
    provenance: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    goal_joints: Optional[JointInput] = None
    """Joints a goal may be given in when the observation is not (e.g. the analytic model
    observing the camera takes goals as x, y); default: ``joints``."""

    @property
    def command_type(self) -> str:
        """The message type the training data's commands were, where known: recorded by
        ``grasp-ros collect``, or (cards from before it recorded it) told by the units it gives
        trajectory velocities; "" when unknown."""
        recorded = str(self.provenance.get("command_type") or "")
        if recorded or self.actions.units != TRAJECTORY_UNITS:
            return recorded
        return "trajectory_msgs/msg/JointTrajectory"

    @property
    def pairs_joints(self) -> bool:
        """Camera and joints together: the frames are the observations, and joint samples are
        paired with them by stamp."""
        return self.image is not None and self.joints is not None

    @property
    def goal_joint_input(self) -> Optional[JointInput]:
        return self.goal_joints or self.joints

    # -- reading and writing -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (a checkpoint loads with ``weights_only=True``)."""
        def plain(x):
            if dataclasses.is_dataclass(x):
                return {k: plain(v) for k, v in dataclasses.asdict(x).items()}
            if isinstance(x, (tuple, list)):
                return [plain(v) for v in x]
            if isinstance(x, dict):
                return {str(k): plain(v) for k, v in x.items()}
            return x
        return {"format": CARD_FORMAT, **{f.name: plain(getattr(self, f.name))
                                           for f in dataclasses.fields(self)}}

    def to_shown_dict(self) -> dict[str, Any]:
        """``to_dict`` with each input's topic as ``describe`` prints it (``card_topic``): a bag's
        topic absolute, with its leading slash."""
        shown = self.to_dict()
        for key, default in (("image", "image"), ("joints", "joint_states"), ("goal_joints", "joint_states")):
            if shown.get(key):
                shown[key]["topic"] = card_topic(shown[key]["topic"], default)
        return shown

    @classmethod
    def from_dict(cls, data: Any, source: str = "model card") -> "ModelCard":
        """The card in ``data`` (as ``to_dict`` wrote it), checked; ``WorldModelError`` otherwise."""
        if not isinstance(data, dict) or data.get("format") != CARD_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise WorldModelError(f"{source}: not a {CARD_FORMAT} card (found {quote(found)})")
        try:
            a = data["actions"]
            actions = ActionOutput(tuple(str(n) for n in a["names"]), tuple(float(v) for v in a["low"]),
                                   tuple(float(v) for v in a["high"]), str(a.get("units", "")),
                                   str(a.get("kind", "velocity")))
            image = data.get("image")
            image = None if image is None else ImageInput(int(image["size"]), str(image.get("crop", "center")),
                                                          str(image.get("topic", "image")),
                                                          int(image.get("history", 1)))
            joints, goal_joints = (_joint_input(data.get(k)) for k in ("joints", "goal_joints"))
            card = cls(actions, image, joints, float(data.get("period", 0.0)),
                       dict(data.get("provenance") or {}), dict(data.get("metrics") or {}), goal_joints)
        except (KeyError, TypeError, ValueError) as exc:
            raise WorldModelError(f"{source}: malformed card ({type(exc).__name__}: {exc})") from exc
        card.validate(source)
        return card

    def validate(self, source: str = "model card") -> None:
        a = self.actions
        if not a.count or len(a.low) != a.count or len(a.high) != a.count:
            raise WorldModelError(f"{source}: actions need as many bounds as names, got "
                                  f"{len(a.names)} names, {len(a.low)} low, {len(a.high)} high")
        if not all(math.isfinite(hi - lo) and lo < hi for lo, hi in zip(a.low, a.high)):
            raise WorldModelError(f"{source}: action bounds must be finite with low < high (and a "
                                  f"finite range), got {list(a.low)} / {list(a.high)}")
        if len(set(a.names)) != a.count:
            raise WorldModelError(f"{source}: action names repeat: {list(a.names)}")
        if a.kind not in ACTION_KINDS:
            raise WorldModelError(f"{source}: action kind {quote(a.kind)} is not one of {ACTION_KINDS}")
        if a.kind == "twist" and not set(a.names) <= set(TWIST_FIELDS):
            raise WorldModelError(f"{source}: twist actions must be named among {TWIST_FIELDS}, "
                                  f"got {list(a.names)}")
        if self.image is None and self.joints is None:
            raise WorldModelError(f"{source}: the card names no input (image or joints)")
        if self.image is not None and (self.image.size < 1 or self.image.crop not in CROP_MODES
                                       or self.image.history < 1):
            raise WorldModelError(f"{source}: image needs size >= 1, crop in {CROP_MODES} and history "
                                  f">= 1, got {self.image.size} / {quote(self.image.crop)} / {self.image.history}")
        for j in (self.joints, self.goal_joints):
            if j is None:
                continue
            if not j.names or len(set(j.names)) != len(j.names):
                raise WorldModelError(f"{source}: joint names must be given, each once: {list(j.names)}")
            if not j.fields or not set(j.fields) <= set(JOINT_FIELDS) or len(set(j.fields)) != len(j.fields):
                raise WorldModelError(f"{source}: joint fields must be among {JOINT_FIELDS}, each once, "
                                      f"got {list(j.fields)}")
            if not set(j.continuous) <= set(j.names):
                raise WorldModelError(f"{source}: continuous joints {sorted(set(j.continuous) - set(j.names))} "
                                      f"are not among the joints {list(j.names)}")
        if not (math.isfinite(self.period) and self.period >= 0):
            raise WorldModelError(f"{source}: period must be >= 0 s (0: unknown), got {self.period}")

    # -- what the card says about commands --------------------------------------------------

    def to_robot(self, model_actions: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """Actions [..., A] in the model's box [low, high] -> robot units (the card's bounds)."""
        lo, hi = np.asarray(self.actions.low), np.asarray(self.actions.high)
        actions = np.asarray(model_actions, dtype=np.float64)
        if np.array_equal(lo, low) and np.array_equal(hi, high):
            return actions.copy()    # the same box: exactly the same numbers
        return lo + (actions - low) / (high - low) * (hi - lo)

    def to_model(self, robot_actions: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """The inverse of ``to_robot``."""
        lo, hi = np.asarray(self.actions.low), np.asarray(self.actions.high)
        actions = np.asarray(robot_actions, dtype=np.float64)
        if np.array_equal(lo, low) and np.array_equal(hi, high):
            return actions.copy()
        return low + (actions - lo) / (hi - lo) * (high - low)

    def describe(self) -> str:
        """The card as text, for people (``grasp-ros info``)."""
        a = self.actions
        lines = [f"period: {self.period:g} s per step (control_rate_hz {1 / self.period:g})"
                 if self.period else "period: unknown"]
        if self.image is not None:
            frames = f", the last {self.image.history} frames" if self.image.history > 1 else ""
            lines.append(f"image: {self.image.size}x{self.image.size} RGB on {card_topic(self.image.topic, 'image')!r}{frames} "
                         f"(other sizes and aspects: {self.image.crop}, then resize)")
        if self.joints is not None:
            lines.append(f"joints: {list(self.joints.names)} x {list(self.joints.fields)} on "
                         f"{card_topic(self.joints.topic, 'joint_states')!r} ({self.joints.dim} values)"
                         + (f"; continuous (angles that wrap): {list(self.joints.continuous)}"
                            if self.joints.continuous else ""))
        units = [u.strip() for u in str(a.units).split(",")]
        if len(units) == a.count and a.count > 1:     # one unit per action: beside each one
            lines.append(f"actions ({a.kind}): " + ", ".join(
                f"{n} [{lo:g}, {hi:g}] {u}" for n, lo, hi, u in zip(a.names, a.low, a.high, units)))
        else:
            lines.append(f"actions ({a.kind}, {a.units}): " + ", ".join(
                f"{n} [{lo:g}, {hi:g}]" for n, lo, hi in zip(a.names, a.low, a.high)))
        for title, entries in (("provenance", self.provenance), ("metrics", self.metrics)):
            if entries:
                lines.append(f"{title}:")
                lines += [f"  {k}: {_short(v)}" for k, v in entries.items()]
        return "\n".join(lines)


def card_topic(topic: str, default: str) -> str:
    """An input's topic as the card means it: its own ``default`` name stays relative (a node's
    namespace and remaps apply); a bag's topic is absolute, whether or not it was stored with
    its leading slash."""
    return topic if topic == default else "/" + topic.lstrip("/")


def _joint_input(data: Optional[dict]) -> Optional[JointInput]:
    if data is None:
        return None
    return JointInput(tuple(str(n) for n in data["names"]), tuple(str(f) for f in data.get("fields", ("position",))),
                      str(data.get("topic", "joint_states")), tuple(str(n) for n in data.get("continuous", ())))


def wrap_to_nearest(goal: np.ndarray, measured: np.ndarray, columns) -> np.ndarray:
    """``goal`` with each of ``columns`` (angles) moved by a whole number of turns to lie within
    pi of ``measured``: the goal yaw -3.0 seen from 3.0 is 3.28, a 0.28 rad turn, not 6."""
    goal = np.array(goal, dtype=np.float64, copy=True)
    if len(columns):
        c = list(columns)
        goal[c] = measured[c] + np.mod(goal[c] - measured[c] + np.pi, 2 * np.pi) - np.pi
    return goal


def _short(value: Any, limit: int = 160) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[:limit - 3] + "..."


def card_for(model) -> ModelCard:
    """The model's card: ``model.card`` (a ``ModelCard`` or its dict) checked against the
    model's contract attributes, or one derived from those attributes."""
    own = getattr(model, "card", None)
    if own is None and getattr(model, "card_json", ""):   # as a TorchScript module carries it
        try:
            own = json.loads(model.card_json)
        except ValueError as exc:
            raise WorldModelError(f"model card: card_json is not JSON ({exc})") from exc
    if own is None:
        return derived_card(model)
    card = own if isinstance(own, ModelCard) else ModelCard.from_dict(own)
    check_card_fits(card, model)
    return card


def derived_card(model, joint_names: Optional[Sequence[str]] = None) -> ModelCard:
    """A card from the contract alone: the model's action box in "normalised" units, its
    declared inputs, joints named j0.. unless ``joint_names`` are given, period unknown."""
    low = [float(v) for v in np.asarray(model.action_low.detach().cpu()).reshape(-1)]
    high = [float(v) for v in np.asarray(model.action_high.detach().cpu()).reshape(-1)]
    size, joint_dim = int(getattr(model, "image_size", 0)), int(getattr(model, "joint_dim", 0))
    names = tuple(joint_names) if joint_names else tuple(f"j{i}" for i in range(joint_dim))
    return ModelCard(
        ActionOutput(tuple(f"a{i}" for i in range(len(low))), tuple(low), tuple(high)),
        image=ImageInput(size, history=int(getattr(model, "image_frames", 1))) if size else None,
        joints=JointInput(names) if joint_dim else None)


def unnamed_actions(names) -> bool:
    """Actions named only by their place (a MultiArray's data[i], a[i], ``derived_card``'s a0)."""
    return any(re.fullmatch(r"(data|a)\[?\d+\]?", n) for n in names)


def check_card_fits(card: ModelCard, model, source: str = "model card") -> None:
    """The card and the model's contract attributes must describe the same model."""
    A, size = int(model.action_dim), int(getattr(model, "image_size", 0))
    if card.actions.count != A:
        raise WorldModelError(f"{source}: names {card.actions.count} actions, the model takes {A}")
    if card.image is not None and card.image.size != size:
        raise WorldModelError(f"{source}: image size {card.image.size}, the model encodes {size}")
    frames = int(getattr(model, "image_frames", 1))
    if card.image is not None and card.image.history != frames:
        raise WorldModelError(f"{source}: image history {card.image.history}, the model encodes {frames} frames")
    joint_dim = int(getattr(model, "joint_dim", 0))
    if card.joints is not None and card.joints.dim != joint_dim:
        raise WorldModelError(f"{source}: {card.joints.dim} joint values, the model encodes {joint_dim}")


NAV_SIM_JOINTS = NAV_SIM_ACTIONS = ("x", "y")   # actions: the velocities of those joints
"""The navigation sims' joint and command names, for datasets written before names were kept."""


def card_from_data(meta: dict, image_size: int, joint_dim: int, action_dim: int,
                   metrics: dict, action_low: Optional[Sequence[float]] = None,
                   action_high: Optional[Sequence[float]] = None, image_frames: int = 1) -> ModelCard:
    """The card of a model trained on a dataset with metadata ``meta`` (``grasp_ros.data``):
    joint names and fields, action names, units and bounds, period and provenance as the data
    recorded them. Bounds: ``action_low``/``high`` (e.g. measured on the data), else the
    metadata's, else [-1, 1]."""
    image = ImageInput(int(image_size), str(meta.get("crop", "center")),
                       str((meta.get("topics") or {}).get("image", "image")).lstrip("/") or "image",
                       int(image_frames)) if image_size else None
    joints = None
    if joint_dim:
        fields = tuple(meta.get("joint_fields") or ("position",))
        names = tuple(meta.get("joint_names") or ())
        if not names and meta.get("env") and joint_dim == len(NAV_SIM_JOINTS) * len(fields):
            names = NAV_SIM_JOINTS
        if len(names) * len(fields) != joint_dim:
            names = tuple(f"j{i}" for i in range(joint_dim // max(len(fields), 1)))
            fields = fields if len(names) * len(fields) == joint_dim else ("position",)
            names = names if len(names) * len(fields) == joint_dim else tuple(f"j{i}" for i in range(joint_dim))
        joints = JointInput(names, fields, str((meta.get("topics") or {}).get("joints", "joint_states")).lstrip("/"),
                            tuple(n for n in meta.get("continuous_joints") or () if n in names))
    low = action_low if action_low is not None else meta.get("action_low") or [-1.0] * action_dim
    high = action_high if action_high is not None else meta.get("action_high") or [1.0] * action_dim
    names = tuple(meta.get("action_names") or ())
    if not names and meta.get("env") and action_dim == len(NAV_SIM_ACTIONS):
        names = NAV_SIM_ACTIONS
    names = names or tuple(f"a{i}" for i in range(action_dim))
    kind = str(meta.get("action_kind") or ("twist" if set(names) <= set(TWIST_FIELDS) else "velocity"))
    actions = ActionOutput(names, tuple(float(v) for v in low), tuple(float(v) for v in high),
                           str(meta.get("action_units") or "normalised"), kind)
    # An image-only model still decodes the data's joints (its state head): goals may name them.
    goal_joints = None
    if not joint_dim and meta.get("joint_names"):
        fields = tuple(meta.get("joint_fields") or ("position",))
        goal_joints = JointInput(tuple(meta["joint_names"]), fields)
    provenance = {k: meta[k] for k in ("source", "env", "bags", "topics", "command_type", "frames", "frames_dropped",
                                       "episodes", "steps", "policy", "seed") if k in meta}
    card = ModelCard(actions, image, joints, float(meta.get("period") or 0.0), provenance, dict(metrics),
                     goal_joints)
    card.validate("model card from the training data")
    return card

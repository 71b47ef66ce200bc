"""The node's wiring to a robot, and what is found wrong with it: the command's message type and
topic by ``command_interface``, peers of another message type on the node's topics (DDS never
matches them: silence, not an error), and topics other than those the model was trained on; from
the parameters and the model card, the joints a command names, their order and position limits,
and whether the model can serve the parameters at all."""
from __future__ import annotations

import math
from typing import Any, Optional

from geometry_msgs.msg import Twist, TwistStamped
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from ..models.card import ModelCard, card_topic, stop_warnings, unnamed_actions, value_labels

OUTPUTS = {"forward_command": (Float64MultiArray, "command"),
           "joint_trajectory": (JointTrajectory, "joint_trajectory"),
           "twist": (Twist, "cmd_vel"), "twist_stamped": (TwistStamped, "cmd_vel")}
"""The command's message type and topic, by command_interface."""


def type_name(msg_type) -> str:
    """A message class's ROS type name, as the graph reports it: pkg/msg/Name."""
    return f"{msg_type.__module__.split('.')[0]}/msg/{msg_type.__name__}"


def interface_hint(types, topic: str) -> str:
    """How to command a robot that reads one of ``types`` (ROS type names) on ``topic``."""
    for interface, (msg_type, name) in OUTPUTS.items():
        if type_name(msg_type) in types:
            return (f"; to send {type_name(msg_type)} there, set -p command_interface:={interface} "
                    f"and remap its topic (--ros-args -r {name}:={topic})")
    return ""


def silent_inputs(node, inputs: list[tuple[str, str]]) -> list[str]:
    """Publishers of another message type on a topic ``node`` reads (``inputs``: topic, type):
    the input stays silent (a CompressedImage topic read as Image, say); named instead."""
    found = []
    for topic, wanted in inputs:
        others = sorted({info.topic_type for info in node.get_publishers_info_by_topic(topic)} - {wanted})
        if others:
            hint = (": for compressed images set -p image_transport:=compressed and remap "
                    f"image to {topic.removesuffix('/compressed')}"
                    if "sensor_msgs/msg/CompressedImage" in others and wanted == "sensor_msgs/msg/Image"
                    else "")
            found.append(f"{topic} is published as {', '.join(others)}; this node reads "
                         f"{wanted} there and receives nothing{hint}")
    return found


def unread_outputs(node, outputs: list[tuple[str, str]]) -> list[str]:
    """Subscribers of another message type on the topic ``node`` commands (``outputs``: topic,
    type): the robot never gets a command (an array sent to a trajectory controller); named
    instead."""
    found = []
    for topic, sent in outputs:
        others = sorted({info.topic_type for info in node.get_subscriptions_info_by_topic(topic)} - {sent})
        if others:
            found.append(f"{topic} is read as {', '.join(others)}; this node commands {sent} "
                         f"there, which its reader never receives{interface_hint(others, topic)}")
    return found


def action_range_warnings(card: ModelCard) -> list[str]:
    """What the stop (a zero command) means for the card's actions: ranges without it
    (``card.stop_warnings``), and zero effort."""
    a = card.actions
    effort = ([f"the model's actions are efforts ({list(a.names)}): the stop, zero effort, holds "
               "nothing against gravity or momentum; the robot's own brake or controller must"]
              if a.kind == "effort" else [])
    unread = [n for n in a.names if n in UNREAD_TWIST_FIELDS] if a.kind == "twist" else []
    lost = ([f"the model's actions include Twist fields {unread} that no diff_drive_controller or "
             "Nav2 node reads (they read linear.x and angular.z; Nav2 linear.y too): those commands "
             "would be lost there"] if unread else [])
    return stop_warnings(a.names, a.low, a.high) + effort + lost


UNREAD_TWIST_FIELDS = ("linear.z", "angular.x", "angular.y")
"""Twist fields that diff_drive_controller, Nav2's velocity_smoother and collision_monitor leave
out (a base on the ground): an audit's model commanded angular.x, configured with no warning."""


def topic_mismatches(node, card: ModelCard, values: dict[str, Any]) -> list[str]:
    """The card names the topics its training data came from (a robot's bag: its own, such
    as /my_robot/camera/image_raw): a warning for each input ``node`` reads, or output it
    sends, elsewhere (``values``: its parameters)."""
    found = []
    compressed = values["image_transport"] == "compressed"
    for name, given in (("image", card.image), ("joint_states", card.joints)):
        if given is None:
            continue
        # the card's own default names are relative (namespaces and remaps apply); a bag's
        # topics are absolute
        read = node.resolve_topic_name(name)
        trained = node.resolve_topic_name(card_topic(given.topic, name))
        if name == "image":
            # image_transport's naming: the node remaps the base topic and, with compressed
            # transport, reads base/compressed; a bag names the topic it recorded.
            base, was_compressed = trained.removesuffix("/compressed"), trained.endswith("/compressed")
            transport = " and -p image_transport:=compressed" if was_compressed and not compressed else ""
            if base != read:
                found.append(f"the model was trained on {trained}, and this node reads image from "
                             f"{read}{'/compressed' if compressed else ''}: if {trained} is the "
                             f"robot's, remap the base topic (--ros-args -r image:={base}{transport}, "
                             f"or the launch argument image:={base})")
            elif transport:
                found.append(f"the model was trained on compressed images ({trained}), and this "
                             f"node reads raw sensor_msgs/Image from {read}: set "
                             "-p image_transport:=compressed to read them")
        elif trained != read:
            found.append(f"the model was trained on {trained}, and this node reads {name} from "
                         f"{read}: if {trained} is the robot's, remap it (--ros-args -r "
                         f"{name}:={trained}, or the launch argument {name}:={trained})")
    # The commands of the bag: remapping the output there serves only where it carries the
    # recorded type (an array sent to a trajectory controller's topic reaches nothing).
    msg_type, output = OUTPUTS[values["command_interface"]]
    commanded = (card.provenance.get("topics") or {}).get("command")
    recorded_type = card.command_type
    if commanded:
        sent, recorded = node.resolve_topic_name(output), "/" + str(commanded).lstrip("/")
        if recorded_type and recorded_type != type_name(msg_type):
            found.append(f"the model's actions were recorded as {recorded_type} on {recorded}, and "
                         f"this node commands {type_name(msg_type)} on {sent} (command_interface "
                         f"{values['command_interface']}){interface_hint([recorded_type], recorded)}")
        elif sent != recorded and (recorded_type or output != "joint_trajectory"):
            found.append(f"the model's actions were recorded on {recorded}, and this node "
                         f"commands on {sent}: if the robot takes them there, remap it "
                         f"(--ros-args -r {output}:={recorded})")
    return found


# -- the command's joints and the model's fit, from the parameters and the card -------------

def command_joints(values: dict[str, Any], card) -> Optional[list[str]]:
    """The joints a JointTrajectory command names (one per action), or None for other outputs."""
    if values["command_interface"] != "joint_trajectory":
        return None
    return list(values["joint_names"] or []) or list(card.actions.names)


def trajectory_limits(values: dict[str, Any], card) -> Optional[tuple[list[float], list[float]]]:
    """Position limits (low, high), one per ``command_joints``, from cost.joint_limits_low/high
    (the robot's joint limits, one per value of the model's joint vector): a trajectory's
    positions stay within them. A command joint they give no position limit: +-inf. None: no
    limits given, or none for any command joint."""
    joints, low, high = command_joints(values, card), values["cost.joint_limits_low"], values["cost.joint_limits_high"]
    if joints is None or not low or not high or len(low) != len(high):
        return None
    spec = card.goal_joint_input
    labels = value_labels(spec, len(low))
    positions_only = spec is not None and tuple(spec.fields) == ("position",)   # labels without fields
    bounds = []
    for joint in joints:
        names = (f"{joint}.position", joint) if positions_only else (f"{joint}.position",)
        at = next((labels.index(label) for label in names if label in labels), None)
        bounds.append((-math.inf, math.inf) if at is None else (float(low[at]), float(high[at])))
    if all(b == (-math.inf, math.inf) for b in bounds):
        return None
    return [b[0] for b in bounds], [b[1] for b in bounds]


def command_order(values: dict[str, Any], card) -> Optional[list[int]]:
    """The model's action index for each of ``command_joints``, where joint_names reorders
    actions that the card names (a trajectory is then sent by name); None: the model's order."""
    joints, names = command_joints(values, card), list(card.actions.names)
    if joints is None or joints == names or unnamed_actions(names) or sorted(joints) != sorted(names):
        return None
    return [names.index(j) for j in joints]


PERIOD_WARNING = 0.02
"""A control period further than this fraction from the model's period is worth a warning
(within ``period_tolerance`` it still configures)."""


def period_warning(values: dict[str, Any], card) -> Optional[str]:
    """A warning when control_rate_hz is within period_tolerance of the model's period but not
    at it (leaving the 10 Hz default for a model of another period), or None."""
    period = 1.0 / values["control_rate_hz"]
    if card.period <= 0 or abs(period - card.period) <= PERIOD_WARNING * card.period:
        return None
    return (f"control_rate_hz {values['control_rate_hz']:g} (period {period:g} s) is "
            f"{abs(period - card.period) / card.period:.0%} off the model's period {card.period:g} s: "
            f"its predictions are steps of {card.period:g} s, each command is held {period:g} s; "
            f"control_rate_hz {1 / card.period:g} matches it")


def check_model_fit(values: dict[str, Any], card) -> Optional[str]:
    """Whether the model (by its card, ``grasp_ros.models.card``) can serve these parameters;
    the reason it cannot, or None."""
    period, tolerance = 1.0 / values["control_rate_hz"], values["period_tolerance"]
    if card.period > 0 and abs(period - card.period) > tolerance * card.period:
        return (f"control_rate_hz {values['control_rate_hz']:g} (period {period:g} s) is far from the "
                f"model's period {card.period:g} s ({1 / card.period:g} Hz): its predictions are steps of "
                f"{card.period:g} s (period_tolerance {tolerance:g})")
    robot = list(values["joint_names"] or [])
    actions, interface = card.actions, values["command_interface"]
    # A trajectory's joints are the commanded ones: the model may also encode others (a gripper,
    # a passive joint), read from joint_states by name.
    if card.joints is not None and robot and interface != "joint_trajectory":
        missing = [n for n in card.joints.names if n not in robot]
        if missing:
            return f"the model encodes joints {missing} that joint_names {robot} lacks"
    if interface == "joint_trajectory":
        joints = command_joints(values, card)
        if actions.count != len(joints):
            return (f"command_interface joint_trajectory needs one joint per action: the model has "
                    f"{actions.count} actions {list(actions.names)}, the trajectory joints are {joints}")
        if not robot and unnamed_actions(joints):
            return (f"command_interface joint_trajectory needs joint names, and the model's actions "
                    f"have none ({list(actions.names)}): set joint_names, one per action, or name "
                    "them when collecting the data (grasp-ros collect --action-names)")
        if robot and not unnamed_actions(actions.names) and sorted(robot) != sorted(actions.names):
            # A name by place would send one joint's velocity to another.
            return (f"joint_names {robot} are not the joints the model's actions command "
                    f"{list(actions.names)}: a trajectory names each velocity's joint, so they "
                    "must be those joints (in any order), or leave joint_names unset")
        if actions.kind != "velocity":
            return f"command_interface joint_trajectory sends velocities; the model's actions are {actions.kind}"
    if interface in ("twist", "twist_stamped") and actions.kind != "twist":
        return (f"command_interface {interface} needs actions named as Twist fields (linear.x, "
                f"angular.z, ...); the model's are {list(actions.names)} ({actions.kind})")
    if values.get("goal_tolerance") and actions.kind == "effort":
        return ("goal_tolerance stops the robot at its goal with the stop, zero effort, which holds "
                "nothing against gravity or momentum (the model's actions are efforts): leave "
                "goal_tolerance unset")
    if actions.kind == "position":
        # The stop (stale, errors, deactivation) is zero: for position commands, "go to 0".
        return ("the model's actions are positions, and this controller's stop is a zero command, "
                "which would send the robot to position 0 when a sensor or the clock dies: command "
                "it by velocity (a velocity controller, joint_trajectory velocities, or Twist)")
    return None

"""The node's wiring to a robot, and what is found wrong with it: the command's message type and
topic by ``command_interface``, peers of another message type on the node's topics (DDS never
matches them: silence, not an error), and topics other than those the model was trained on."""
from __future__ import annotations

from typing import Any

from geometry_msgs.msg import Twist, TwistStamped
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from ..models.card import ModelCard, card_topic, stop_warnings

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


def type_mismatches(node, inputs: list[tuple[str, str]], outputs: list[tuple[str, str]]) -> list[str]:
    """Publishers of another message type on a topic ``node`` reads (``inputs``: topic, type),
    or subscribers of another on the topic it commands (``outputs``): the input stays silent (a
    CompressedImage topic read as Image, say), or the robot never gets a command (an array sent
    to a trajectory controller); named instead."""
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
    return stop_warnings(a.names, a.low, a.high) + effort


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

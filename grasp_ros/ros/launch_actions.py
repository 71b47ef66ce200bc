"""What the package's launch files share. Imported by them alone: it needs ROS 2's launch."""
from __future__ import annotations

import os
import signal

from launch import LaunchContext
from launch.actions import EmitEvent, ExecuteProcess, RegisterEventHandler
from launch.event_handlers import OnProcessExit, OnShutdown
from launch.events import Shutdown
from launch.substitution import Substitution
from launch.substitutions import LaunchConfiguration
from launch_ros.utilities import make_namespace_absolute, prefix_namespace

from .interrupts import WITH_PARENT_ENV

EXIT_WITH_LAUNCH = {WITH_PARENT_ENV: str(os.getpid())}
"""``additional_env`` of this package's nodes: each stops, in order, when ``ros2 launch`` (this
process: launch files run inside it) dies, or has died before the node got going (SIGTERM or
SIGKILL end launch without stopping its nodes; ``interrupts.exit_with_parent``)."""


def params_file_exists(context: LaunchContext) -> list:
    """For an OpaqueFunction: launch_ros only warns about a missing parameter file and starts the
    node on its defaults, so a typo in params_file would control the robot with settings nobody
    chose."""
    path = LaunchConfiguration("params_file").perform(context)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"params_file {path!r} is not a file")
    return []


def end_launch(event, context: LaunchContext):
    """For OnProcessExit: a node the launch cannot do without exited (a failed autostart, a
    crash), so the launch ends too. Not again when it is already shutting down (Ctrl-C ends every
    process): a second Shutdown makes launch_ros fail. A failure raises: launch has no exit
    status to set, and an exception out of an event handler is what makes ``ros2 launch`` exit 1
    (it stops the other processes as on Shutdown), where a failed configure exited 0."""
    if context.is_shutdown:
        return None
    reason = f"{event.process_name} exited with status {event.returncode}"
    if event.returncode not in (0, None):
        raise RuntimeError(reason)
    return [EmitEvent(event=Shutdown(reason=reason))]


def interrupt_on_sigint(*processes: ExecuteProcess) -> RegisterEventHandler:
    """SIGINT to each of ``processes`` when launch shuts down on a SIGINT of its own. Launch
    passes one on to its processes only when it runs non-interactively: otherwise it takes the
    signal for a terminal's Ctrl-C, which the whole process group got. A SIGINT to the launch
    process alone (a supervisor, a script's ``kill -INT``, this package's harness) left the
    nodes running until launch's SIGTERM 5 s later, the controller commanding (an audit: 50-60
    moving commands). A node that had the signal already ignores the second one."""
    def interrupt(event: Shutdown, context: LaunchContext):
        if not getattr(event, "due_to_sigint", False):   # any other shutdown: launch signals them
            return None
        for process in processes:
            details = process.process_details
            if details is not None:
                try:
                    os.kill(details["pid"], signal.SIGINT)
                except ProcessLookupError:   # already gone
                    pass
        return None
    return RegisterEventHandler(OnShutdown(on_shutdown=interrupt))


def supervised(*processes: ExecuteProcess) -> list[RegisterEventHandler]:
    """The handlers every launch file of the package gives its own nodes: the launch ends when
    one of them exits (``end_launch``), and a SIGINT to launch reaches them (``interrupt_on_sigint``)."""
    return [*(RegisterEventHandler(OnProcessExit(target_action=p, on_exit=end_launch)) for p in processes),
            interrupt_on_sigint(*processes)]


class UseSimTime(Substitution):
    """The node's use_sim_time: the ``use_sim_time`` launch argument where it is given, else what
    an including launch file's ``SetParameter(use_sim_time)`` says, else false. A default of the
    argument would override that SetParameter (a node's own parameters come after the global
    ones), and the node locks use_sim_time once started."""

    def perform(self, context: LaunchContext) -> str:
        given = LaunchConfiguration("use_sim_time", default="").perform(context).strip()
        if given:
            return given
        for name, value in reversed(context.launch_configurations.get("global_params", [])):
            if name == "use_sim_time":
                return str(value).lower()
        return "false"


CAMERA_RELIABILITIES = ("reliable", "best_effort")


def resolved_topic(context: LaunchContext, topic: str, namespace: str = "", node_name: str = "") -> str:
    """``topic`` as rcl names it for a node this launch starts in ``namespace``: an absolute
    name as it is, ``~/x`` under the node's own name, any other in the node's namespace, which
    is inside an including launch's pushed namespace unless it is absolute itself."""
    if not namespace.startswith("/"):
        namespace = make_namespace_absolute(
            prefix_namespace(context.launch_configurations.get("ros_namespace"), namespace))
    if topic.startswith("/"):
        return topic
    if topic.startswith("~"):
        namespace, topic = f"{namespace.rstrip('/')}/{node_name}", topic[1:].lstrip("/")
    return f"{namespace.rstrip('/')}/{topic}"


def camera_reliability(topic: str, end: str, reliability: str) -> dict:
    """QoS overrides that make ``end`` (publisher or subscription) of the camera ``topic`` (as
    resolved) ``reliability``, raw and compressed: a best-effort reader gets few of a large raw
    frame's DDS fragments complete (README, "Large raw frames need a reliable reader"). The
    transport the node does not read leaves its override unused. Empty ``reliability``: none
    (the node's parameter file, else the sensor-data profile's best effort)."""
    reliability = reliability.strip().lower()
    if not reliability:
        return {}
    if reliability not in CAMERA_RELIABILITIES:
        raise ValueError(f"camera_reliability must be one of {', '.join(CAMERA_RELIABILITIES)} "
                         f"or empty, got {reliability!r}")
    return {f"qos_overrides.{name}.{end}.reliability": reliability
            for name in (topic, f"{topic}/compressed")}

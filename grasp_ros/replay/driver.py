"""Drive a real ``grasp_controller`` process through recorded cycles, in lock step over DDS.

The controller runs as its own process (``python -m grasp_ros.ros.controller_node``, or through
``ros2 launch`` and the package's launch file: ``controller_command``) with ``use_sim_time``, in a
private DDS domain; this process owns /clock. Per cycle:

1. its inputs, in the bag's receive order, each published with the recorded bytes. The
   controller's sensor subscriptions are made reliable and deep for the replay (its QoS
   overrides, ``grasp_ros.ros.qos.SENSOR_OVERRIDES``) and the goals are reliable already, so
   ``wait_for_all_acked`` says a message is in the controller's reader. A service call to the
   controller then serves as a barrier: its single-threaded executor takes ready subscriptions
   before ready services (rclpy's order within one wait), so when the call returns, a message
   acknowledged before it was sent has been taken. A wait takes one message per subscription,
   so the barrier follows every message (it also keeps the order across topics).
2. with ``iterations`` recorded: ``planner.iterations`` set to the cycle's recorded count, and
   for GRASP ``planner.max_syncs`` and ``planner.max_start_samples`` to its recorded syncs and
   start samples (under a wall-clock budget its last syncs may have been skipped and fewer
   samples drawn); dynamic parameters: the controller applies them from its next
   cycle; the set call is a barrier.
3. /clock set to the cycle's time: the controller's timer fires, the cycle runs with a fixed
   iteration count, and this process waits for its PlanDiagnostics (stamped with that time).
   /clock is best effort: it is published again, same value, while the answer is awaited.

Acknowledgements: Fast DDS acknowledges a small reliable message only when its writer sends the
next periodic heartbeat, 3 s by default. The replay gives this process and the controller's a
Fast DDS profile (``FASTDDS_PROFILE``: heartbeats every millisecond while a message is
unacknowledged, answered at once) through ``FASTDDS_DEFAULT_PROFILES_FILE``, unless that is set
already. Fast DDS reads it when a process first uses DDS: a process that did before (a test
runner that ran other nodes) replays correctly, only slower.

Start-up: the node starts unconfigured; /clock is set to the activation time and confirmed (the
``stamp`` of the parameter event that a parameter set makes is the controller's clock); then
configure, activate. Nothing here depends on how long anything takes: waits end on an answer,
and the time limits only turn a hung controller into an error.
"""
from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import rclpy
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from rcl_interfaces.msg import ParameterEvent
from rcl_interfaces.srv import GetParameters, ListParameters, SetParametersAtomically
from rclpy.context import Context
from rclpy.duration import Duration
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter as RclpyParameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_parameter_events
from rosgraph_msgs.msg import Clock

from grasp_ros.msg import PlanDiagnostics

from ..ros import qos
from ..ros.params import BY_NAME, NODE_NAME
from ..ros.processes import Processes, isolate_dds
from ..timebase import NS, SAME_TIME_NS, stamp_ns
from .bag import CONTROLLER, COUNTS, Cycle, Recording, cap_parameter, cycle_from_message, message_class
from .schedule import ReplayCycle
from .settings import params_file_text

SENSOR_DEPTH = 100
"""Depth of the replayed sensor streams (controller reader and replay writer alike)."""
SENSOR_QOS_OVERRIDES = {f"qos_overrides./{topic}.subscription.{policy}": value
                        for topic in ("image", "image/compressed", "joint_states")
                        for policy, value in (("reliability", "reliable"), ("history", "keep_last"),
                                              ("depth", SENSOR_DEPTH))}
"""The controller's parameters that make its sensor subscriptions reliable and deep."""
REPLAY_TOPICS = {"image": "image", "joints": "joint_states",
                 "goal_state": f"{CONTROLLER}/goal_state", "goal_image": f"{CONTROLLER}/goal_image"}
"""Where the replay delivers each input role: the controller's own topic names."""
CLOCK_RESEND_S = 1.0
"""Wall seconds between re-sends of an unanswered /clock (same value: harmless)."""
CAPS = {name: cap_parameter(name) for name in COUNTS}
"""GRASP's parameter that repeats each recorded count (``ReplayCycle``'s field of that name)."""
NO_CAP = {name: int(BY_NAME[param].range[1]) for name, param in CAPS.items()}
"""Each cap's largest value: no cap."""
PROFILES_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"
CAPABILITY_ENV = "ATEN_CPU_CAPABILITY"
"""torch's CPU kernel set: the recorded one makes the replayed arithmetic the recorded one (a
newer CPU runs an older set; an older CPU cannot run a newer one and keeps its own)."""
FASTDDS_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<dds xmlns="http://www.eprosima.com">
  <profiles>
    <data_writer profile_name="grasp_replay_writer" is_default_profile="true">
      <times><heartbeat_period><sec>0</sec><nanosec>1000000</nanosec></heartbeat_period></times>
    </data_writer>
    <data_reader profile_name="grasp_replay_reader" is_default_profile="true">
      <times><heartbeat_response_delay><sec>0</sec><nanosec>0</nanosec></heartbeat_response_delay></times>
    </data_reader>
  </profiles>
</dds>
"""


class ReplayError(Exception):
    """The replay could not run (the controller refused its settings, died or hung)."""


@dataclass
class ReplayRun:
    """What the replayed controller reported, and how long it took."""

    replayed: dict[int, Cycle]          # recorded cycle index -> the replayed cycle's report
    extra: list[Cycle]                  # reports of no replayed cycle (e.g. a timer firing twice)
    startup_s: float                    # wall: process start to activation
    wall_s: float                       # wall: first cycle's inputs to last cycle's report
    activation_clock: int               # ns
    subscribed: list[str]               # the input roles the controller subscribes to
    log: Path
    messages_delivered: int = 0
    cpu_capability: str = ""            # the replayed controller's CPU kernel set


class _ReplayNode(Node):
    """The replay's side of DDS: input publishers, /clock, the controller's services, reports."""

    def __init__(self, context: Context, recording: Recording):
        super().__init__("grasp_replay", context=context)
        sensor = QoSProfile(depth=SENSOR_DEPTH, history=HistoryPolicy.KEEP_LAST,
                            reliability=ReliabilityPolicy.RELIABLE)
        self.publishers_by_role = {}
        for role, (_, kind) in recording.topics.items():
            if role not in REPLAY_TOPICS:
                continue
            topic = REPLAY_TOPICS[role]
            if role == "image" and recording.image_transport == "compressed":
                topic += "/compressed"
            profile = qos.GOAL if role.startswith("goal") else sensor
            self.publishers_by_role[role] = self.create_publisher(message_class(kind), topic, profile)
        self.clock_pub = self.create_publisher(Clock, "/clock", QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE))
        self.state_client = self.create_client(ChangeState, f"{CONTROLLER}/change_state")
        # Atomically: a cycle's several counts are one change, applied (and logged) together.
        self.set_client = self.create_client(SetParametersAtomically, f"{CONTROLLER}/set_parameters_atomically")
        self.get_client = self.create_client(GetParameters, f"{CONTROLLER}/get_parameters")
        self.list_client = self.create_client(ListParameters, f"{CONTROLLER}/list_parameters")
        self.reports: list[Cycle] = []
        self.events: list[ParameterEvent] = []
        self.create_subscription(PlanDiagnostics, f"{CONTROLLER}/plan_diagnostics",
                                 lambda m: self.reports.append(cycle_from_message(m, time.time_ns())),
                                 QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))
        self.create_subscription(ParameterEvent, "/parameter_events",
                                 lambda m: self.events.append(m) if m.node == CONTROLLER else None,
                                 qos_profile_parameter_events)


CONTROLLER_LAUNCH_FILE = "grasp_controller.launch.py"


def controller_command(params_file: Path, values: dict[str, Any], launch: bool = False) -> list[str]:
    """The controller's command line, every parameter in ``params_file``: ``python -m`` the node,
    or with ``launch`` the package's launch file (as on a robot). The launch file sets
    ``use_sim_time`` and ``autostart`` from its arguments after the file, so they are passed
    again; the node keeps its default name, which the replay's clients address."""
    if not launch:
        return [sys.executable, "-m", "grasp_ros.ros.controller_node", "--ros-args",
                "--params-file", str(params_file)]
    return ["ros2", "launch", "grasp_ros", CONTROLLER_LAUNCH_FILE, f"params_file:={params_file}",
            f"use_sim_time:={str(bool(values.get('use_sim_time'))).lower()}",
            f"autostart:={str(bool(values.get('autostart'))).lower()}", f"node_name:={NODE_NAME}"]


class Replayer:
    """One replay: ``run(steps)`` starts the controller, drives it, stops it (see the module doc)."""

    def __init__(self, recording: Recording, values: dict[str, Any], log_dir: Path,
                 call_timeout: float = 60.0, cycle_timeout: float = 600.0, speed: float = 0.0,
                 progress: Callable[[str], None] = lambda text: None, launch: bool = False,
                 timeout: float = math.inf):
        self.recording, self.values = recording, values
        self.log_dir, self.call_timeout, self.cycle_timeout = Path(log_dir), call_timeout, cycle_timeout
        self.timeout = timeout
        """Wall seconds for the whole run (the controller's start included)."""
        self.speed, self.progress, self.launch = speed, progress, launch
        self._ends = math.inf               # monotonic: when the whole run's timeout runs out
        self._capability = ""               # the controller's CPU kernel set, as it reports it
        # made by each run (_run), for its helpers:
        self._node: Optional[_ReplayNode] = None
        self._executor: Optional[SingleThreadedExecutor] = None
        self._processes: Optional[Processes] = None

    def run(self, make_cycles: Callable[[list[str]], Sequence[ReplayCycle]], activation: int) -> ReplayRun:
        """Start the controller (activated at clock ``activation``, ns), replay the steps that
        ``make_cycles(the input roles it subscribes to)`` gives, stop it."""
        isolate_dds()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        recorded = (self.recording.parameters or {}).get("cpu_capability")
        with tempfile.TemporaryDirectory(prefix="grasp-replay-") as scratch, \
                _replay_environment(Path(scratch), recorded):
            params_file = Path(scratch) / "controller.yaml"
            params_file.write_text(params_file_text({**self.values, **SENSOR_QOS_OVERRIDES}), encoding="utf-8")
            return self._run(controller_command(params_file, self.values, self.launch), make_cycles, activation)

    def _run(self, command: list[str], make_cycles, activation: int) -> ReplayRun:
        context = Context()
        rclpy.init(args=[], context=context)
        self._node = _ReplayNode(context, self.recording)
        self._executor = SingleThreadedExecutor(context=context)
        self._executor.add_node(self._node)
        self._processes = Processes({"controller": command}, self.log_dir)
        try:
            started = time.monotonic()
            self._ends = started + self.timeout
            subscribed = self._start(activation)
            steps = make_cycles(subscribed)
            startup = time.monotonic() - started
            self.progress(f"controller active (start-up {startup:.1f} s); replaying {len(steps)} cycles")
            begun = time.monotonic()
            replayed, extra, delivered = self._cycles(steps, subscribed, begun)
            return ReplayRun(replayed=replayed, extra=extra, startup_s=startup,
                             wall_s=time.monotonic() - begun, activation_clock=activation,
                             subscribed=subscribed, log=self._processes.logs["controller"],
                             messages_delivered=delivered, cpu_capability=self._capability)
        finally:
            self._processes.stop()
            self._executor.shutdown(timeout_sec=1.0)
            self._node.destroy_node()
            rclpy.try_shutdown(context=context)

    # -- start-up ---------------------------------------------------------------------------

    def _start(self, activation: int) -> list[str]:
        node = self._node
        for client in (node.state_client, node.set_client, node.get_client, node.list_client):
            self._wait(lambda c=client: c.service_is_ready(), f"the controller's {client.srv_name} service")
        self._set_clock(activation)
        self._transition(Transition.TRANSITION_CONFIGURE, "configure")
        names = self._call(node.list_client, ListParameters.Request(
            prefixes=["qos_overrides"], depth=ListParameters.Request.DEPTH_RECURSIVE)).result.names
        subscribed = [role for role, topic in (("image", "/image"), ("image", "/image/compressed"),
                                               ("joints", "/joint_states"))
                      if any(n.startswith(f"qos_overrides.{topic}.subscription.") for n in names)]
        subscribed += ["goal_state", "goal_image"]
        for role in subscribed:
            publisher = node.publishers_by_role.get(role)
            if publisher is not None:
                self._wait(lambda p=publisher: p.get_subscription_count() > 0,
                           f"the controller's subscription to {publisher.topic_name}")
        self._wait(lambda: node.count_publishers(f"{CONTROLLER}/plan_diagnostics") > 0,
                   "the controller's plan_diagnostics publisher")
        self._transition(Transition.TRANSITION_ACTIVATE, "activate")
        values = self._call(node.get_client, GetParameters.Request(names=["cpu_capability"])).values
        self._capability = values[0].string_value if values else ""
        return sorted(set(subscribed))

    def _set_clock(self, value: int) -> None:
        """/clock := value, confirmed by the clock stamp of the controller's parameter event."""
        node = self._node
        deadline = self._until(self.call_timeout)
        while time.monotonic() < deadline:
            node.events.clear()
            node.clock_pub.publish(_clock(value))
            self._set({"autostart": False})
            until = time.monotonic() + CLOCK_RESEND_S
            while time.monotonic() < until and not node.events:
                self._spin()
            if any(stamp_ns(e.stamp) == value for e in node.events):
                return
        raise ReplayError(self._ran_out(f"the controller's clock to reach {value / NS:.9f} s (is it "
                                        "running with use_sim_time?)", self.call_timeout))

    def _transition(self, transition: int, name: str) -> None:
        answer = self._call(self._node.state_client, ChangeState.Request(transition=Transition(id=transition)))
        if not answer.success:
            raise ReplayError(f"the controller refused to {name} (its log):\n{self._processes.tail('controller')}")

    # -- the cycles -------------------------------------------------------------------------

    def _cycles(self, steps: Sequence[ReplayCycle], subscribed: list[str], begun: float):
        node = self._node
        replayed, delivered = {}, 0
        iterations = self.values.get("planner.iterations")
        caps = {name: NO_CAP[name] if self.values.get(param) is None else self.values[param]
                for name, param in CAPS.items()}
        capped = self.values.get("planner") == "grasp"   # only GRASP has the knobs
        first = steps[0].clock if steps else 0
        for n, step in enumerate(steps):
            change = {}
            if step.iterations is not None and step.iterations != iterations:
                change["planner.iterations"] = iterations = int(step.iterations)
            for name, param in CAPS.items():
                recorded = getattr(step, name)
                wanted = NO_CAP[name] if recorded is None else int(recorded)
                if capped and step.iterations is not None and wanted != caps[name]:
                    change[param] = caps[name] = wanted
            if change:
                self._set(change)
            delivered += self._deliver([i for i in step.inputs if i.role in subscribed])
            if self.speed > 0:   # pacing only: what the controller sees does not depend on it
                wake = begun + (step.clock - first) / NS / self.speed
                if wake > self._ends:     # (an audit: a gap of 1000 s in a bag slept past --timeout)
                    time.sleep(max(0.0, self._ends - time.monotonic()))
                    raise ReplayError(self._ran_out(f"the cycle at {step.clock / NS:.3f} s at --speed "
                                                    f"{self.speed:g}", self.timeout))
                time.sleep(max(0.0, wake - time.monotonic()))
            replayed[step.index] = self._cycle(step.clock)
            if n == 0:
                self._check_command_size(step.index, replayed[step.index])
            if (n + 1) % 50 == 0:
                self.progress(f"{n + 1}/{len(steps)} cycles")
        self._spin(0.0)   # a report of no replayed cycle (a second firing) may trail the last one
        answered = {id(r) for r in replayed.values()}
        extra = [r for r in node.reports if id(r) not in answered]
        return replayed, extra, delivered

    def _check_command_size(self, index: int, report: Cycle) -> None:
        """A controller whose command has another size than the recorded one runs another
        model: nothing it commands compares with the bag's (say so now, not after the replay)."""
        recorded, replayed = int(np.size(self.recording.cycles[index].command)), len(report.command)
        if replayed != recorded:
            hint = ("; the bag holds no controller parameters, so the replay ran the defaults: give the "
                    "robot's with --params-file or -p model:=... model_options:=..."
                    if self.recording.parameters is None else "")
            raise ReplayError(f"the replayed controller commands {replayed} value(s) a cycle, the recorded "
                              f"one {recorded}: its model is not the bag's{hint}")

    def _deliver(self, inputs) -> int:
        """Publish ``inputs`` in order, each taken by the controller before the next is sent."""
        for item in inputs:
            publisher = self._node.publishers_by_role[item.role]
            publisher.publish(item.raw)
            wait = max(0.0, self._until(self.call_timeout) - time.monotonic())
            if not publisher.wait_for_all_acked(Duration(seconds=wait)):
                raise ReplayError(self._ran_out(f"the controller to acknowledge a message on "
                                                f"{publisher.topic_name}", self.call_timeout, log=False))
            self._barrier()
        return len(inputs)

    def _cycle(self, clock: int) -> Cycle:
        """Publish /clock ``clock`` and wait for the report of the cycle it runs."""
        node = self._node
        seen = len(node.reports)
        deadline = self._until(self.cycle_timeout)
        resend = 0.0
        while True:
            now = time.monotonic()
            if now >= resend:
                node.clock_pub.publish(_clock(clock))
                resend = now + CLOCK_RESEND_S
            self._spin()
            mine = [r for r in node.reports[seen:] if abs(r.time - clock) <= SAME_TIME_NS]
            if mine:
                return mine[0]
            if now >= deadline:
                raise ReplayError(self._ran_out(f"the control cycle at {clock / NS:.9f} s",
                                                self.cycle_timeout, "--cycle-timeout"))
            self._check_alive()

    # -- helpers ----------------------------------------------------------------------------

    def _barrier(self) -> None:
        self._call(self._node.get_client, GetParameters.Request(names=["autostart"]))

    def _set(self, values: dict[str, Any]) -> None:
        request = SetParametersAtomically.Request(parameters=[
            RclpyParameter(name, value=value).to_parameter_msg() for name, value in values.items()])
        result = self._call(self._node.set_client, request).result
        if not result.successful:
            raise ReplayError(f"the controller refused {values}: {result.reason}")

    def _call(self, client, request):
        future = client.call_async(request)
        deadline = self._until(self.call_timeout)
        while not future.done():
            if time.monotonic() >= deadline:
                raise ReplayError(self._ran_out(f"an answer from {client.srv_name}", self.call_timeout))
            self._spin()
            self._check_alive()
        return future.result()

    def _wait(self, condition: Callable[[], bool], what: str) -> None:
        deadline = self._until(self.call_timeout)
        while not condition():
            if time.monotonic() >= deadline:
                raise ReplayError(self._ran_out(what, self.call_timeout))
            self._spin()
            self._check_alive()

    def _until(self, seconds: float) -> float:
        """A wait's deadline (monotonic): ``seconds`` from now, or the whole run's end if sooner."""
        return min(time.monotonic() + seconds, self._ends)

    def _ran_out(self, what: str, seconds: float, option: str = "", log: bool = True) -> str:
        """Why a wait for ``what`` ended: its own limit (``seconds``, set by ``option``), or the
        whole run's --timeout when that came first; with the tail of the controller's log."""
        if time.monotonic() >= self._ends:
            why = f"the replay's timeout ({self.timeout:g} s in all, --timeout) ran out while it waited for {what}"
        else:
            why = f"waited {seconds:g} s{f' ({option})' if option else ''} for {what}"
        return f"{why}\n{self._processes.tail('controller')}" if log else why

    def _spin(self, timeout: float = 0.02) -> None:
        self._executor.spin_once(timeout_sec=timeout)

    def _check_alive(self) -> None:
        exited = self._processes.exited()
        if exited:
            raise ReplayError(f"the controller exited with status {exited['controller']}:\n"
                              f"{self._processes.tail('controller')}")
        others = self._node.count_publishers("/clock") - 1
        if others > 0:      # its clock would drive the controller too: no cycle would be ours
            raise ReplayError(f"{others} other publisher(s) of /clock on DDS domain "
                              f"{os.environ.get('ROS_DOMAIN_ID', '0')}: a replay needs the clock to "
                              "itself (set ROS_DOMAIN_ID to a domain nothing else uses)")


@contextmanager
def _replay_environment(scratch: Path, recorded_capability: Optional[str]) -> Iterator[None]:
    """For the replay only, the environment the controller process inherits: the Fast DDS
    profile (``FASTDDS_PROFILE``, written into ``scratch``) unless one is given, and the
    recorded CPU kernel set unless one is chosen already."""
    given_profile = os.environ.get(PROFILES_ENV)
    set_capability = bool(recorded_capability) and CAPABILITY_ENV not in os.environ
    if not given_profile:
        profile = scratch / "fastdds.xml"
        profile.write_text(FASTDDS_PROFILE, encoding="utf-8")
        os.environ[PROFILES_ENV] = str(profile)
    if set_capability:
        os.environ[CAPABILITY_ENV] = str(recorded_capability)
    try:
        yield
    finally:
        if not given_profile:
            os.environ.pop(PROFILES_ENV, None)
        if set_capability:
            os.environ.pop(CAPABILITY_ENV, None)


def _clock(value: int) -> Clock:
    msg = Clock()
    msg.clock.sec, msg.clock.nanosec = divmod(int(value), NS)
    return msg


"""``grasp_sim``: a simulator of the sim room as a ROS 2 node; it stands in for Gazebo.

Worlds. ``env`` picks the world (``world.py``): a 2-D point-mass layout (joints x, y; commands in
[-1, 1]^2) or ``arm``, the MuJoCo planar arm (joints joint1..3 in rad; joint velocity commands in
rad/s within ``grasp_ros.sim.arm.ACTION_LOW/HIGH``; a 96 x 72 camera). The rest of this node is
the same for every world.

Time. The node owns simulated time and publishes it on ``/clock``; every other node runs with
``use_sim_time``. Sim time starts at 0 and advances with the wall clock times ``rate_factor``
(above 1 is faster than real time), in quanta of ``clock_period`` sim seconds, one ``/clock``
message per quantum (at most one per wall millisecond: at high rate factors a message covers
several quanta). If the process falls behind by more than one physics step (CPU starvation), sim
time slows down instead of jumping, as a simulator's real-time factor drops under load.

With ``lockstep`` sim time moves one physics step at a time, each once a command has arrived
since the clock last moved: sensors for t, then /clock t, then the controller's cycle at t and
its command, then the step to t + dt. The closed loop is then the same discrete-time loop on a
fast or a busy machine (with the controller's ``timing: fixed_iterations``, exactly the same).

With ``wait_for_controller`` sim time stays at 0 until a publisher on ``command`` (or
``joint_trajectory``) has existed
for ``start_delay`` wall seconds (the controller makes it when configured, and activates right
after; a longer delay lets a recorder or a viewer find the controller's topics first). A
controller whose timer starts at sim time 0 then cycles exactly when the sensors publish, as a
controller triggered by its camera would: its observation age is transport only, not a random
phase of up to one period. With ``wait_for_subscribers`` it also stays at 0 until the named nodes
subscribe to ``joint_states``: DDS discovery can take seconds on a busy machine, and a lock-step
run is over by then.

Physics. Every ``1 / physics_rate_hz`` sim seconds the world takes one step with the command held
at that moment (zero-order hold): the point mass moves at most the env's ``max_step`` (``reach /
horizon`` of the layout) per step; the arm's servos track the joint velocities over the step (its
control period; MuJoCo substeps it). So a command received during [t, t + dt) acts over that step,
and a controller running at ``physics_rate_hz`` that answers within one period is an exact
discrete-time loop. Commands come on ``command`` (std_msgs/Float64MultiArray, one value per joint)
or ``joint_trajectory`` (trajectory_msgs/JointTrajectory: the first point's velocities, reordered
by joint name when names are given) and are clipped to the world's bounds; a malformed one (wrong
length, unknown joint names, NaN/Inf) is held as zero, with a throttled warning; no command for
``command_timeout`` sim seconds also holds zero (command watchdog).

Sensors. ``joint_states`` after every physics step (point mass: names x, y, position in metres,
velocity over the last step in m/s; arm: joint1..3, position in rad and the physics' velocity in
rad/s); ``image`` (rgb8 top-down camera: ``image_size`` square, the arm's 96 x 72) every ``1 /
camera_rate_hz`` sim seconds. Both are stamped with the sim time they describe, and published
before the ``/clock`` message that reaches that time, so a controller woken by the clock finds them
waiting.

Episodes. Episode k uses the task the world draws for ``seed + k`` (start and goal joints). On its
start the node publishes the goal (``/goal_state`` JointGoal and ``/goal_image``, the robot drawn
at the goal; both reliable + transient_local). The first episode's clock starts with the first
command received (so a slow-starting controller is not timed); an episode ends on success (distance
to goal <= ``success_radius``; the arm: its end effector's) or after ``max_episode_time``. Starts
and ends are reported as JSON on ``~/episode`` (std_msgs/String, reliable + transient_local, depth
100) and in the log:

    {"event": "start", "episode": 0, "seed": 0, "env": "wall_door", "t": 0.0,
     "start": [x, y], "goal": [x, y]}
    {"event": "end", "episode": 0, "seed": 0, "env": "wall_door", "t": 7.3, "success": true,
     "time_to_goal": 6.1, "duration": 6.1, "steps": 61, "final_distance": 0.05, ...}
    {"event": "done", "episodes": 3, "successes": 3, "success_rate": 1.0, "t": 21.0}

After ``episodes`` episodes (0: no end) the node reports ``done``; with ``exit_when_done`` the
process then exits with status 0 (demos and benchmarks end by themselves), otherwise the agent
stays where it is and time goes on.

Exploration. With ``explore`` the node drives its robot itself: after every physics step it
publishes the next command of an exploration policy (``explore.OUExplorer``, seeded by ``seed``)
on ``command``, and takes it from there like any controller's. With ``explore_rest_probability``
the policy also rests now and then (a zero command for 0.5-2 s), so the data shows the robot at
rest. Record the topics with rosbag2 for a dataset; run no controller beside it.
"""
from __future__ import annotations

if __name__ == "__main__":   # a node's process (python -m), before its heavy imports
    from grasp_ros.ros.interrupts import end_at_once_on_stop_signals
    end_at_once_on_stop_signals()

import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any, NoReturn, Optional

import numpy as np
import rclpy
import torch
from builtin_interfaces.msg import Time
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.clock import Clock, ClockType
from rclpy.context import Context
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, Header, String
from trajectory_msgs.msg import JointTrajectory

from grasp_ros.msg import JointGoal

from .explore import OUExplorer
from .world import WORLD_NAMES, make_world
from ..process_exit import leave
from ..ros import interrupts, qos
from ..ros.conversions import rgb_to_image
from ..timebase import NS

MIN_WALL_TICK_S = 0.001  # one /clock message per wall millisecond at most


# --- settings: each parameter declared once -------------------------------------------------

def _param(default, doc: str, low=None, high=None, choices=None):
    return field(default=default, metadata={"doc": doc, "low": low, "high": high, "choices": choices})


@dataclass(frozen=True)
class SimSettings:
    """The node's parameters (all read-only: a change needs a restart). Times are sim seconds."""

    env: str = _param("wall_door", "world: a point-mass layout, or arm (the MuJoCo planar arm)",
                      choices=WORLD_NAMES)
    horizon: int = _param(50, "point mass: env resolution, the agent moves at most reach/horizon "
                              "per step (match the controller's model_options horizon)", 1, 10_000)
    image_size: int = _param(64, "point mass: camera image side in pixels (the arm's camera is "
                                 "96 x 72)", 16, 1024)
    success_radius: float = _param(0.08, "episode succeeds within this distance of the goal (m; "
                                         "the arm: its end effector's)", 1e-3, 1.0)
    seed: int = _param(0, "episode k samples its start and goal with seed + k", 0, 2**31 - 1)
    episodes: int = _param(0, "episodes to run; 0 runs episodes forever", 0, 1_000_000)
    max_episode_time: float = _param(60.0, "an episode fails after this long (s)", 0.1, 1e6)
    exit_when_done: bool = _param(False, "exit the process (status 0) after the last episode")
    physics_rate_hz: float = _param(10.0, "env steps per sim second (zero-order hold of the "
                                          "latest command over each step)", 0.1, 10_000.0)
    camera_rate_hz: float = _param(10.0, "images per sim second", 0.1, 1_000.0)
    command_timeout: float = _param(0.5, "hold zero when no command came for this long (s)",
                                    1e-3, 1e6)
    rate_factor: float = _param(1.0, "sim seconds per wall second (> 1: faster than real time)",
                                1e-3, 1_000.0)
    clock_period: float = _param(0.001, "sim time quantum: /clock advances in these steps (s)",
                                 1e-5, 0.1)
    wait_for_controller: bool = _param(True, "hold sim time at 0 until something publishes "
                                             "on command or joint_trajectory (a configured controller)")
    start_delay: float = _param(0.5, "wait_for_controller: wall seconds a command publisher must "
                                     "exist before sim time starts (the controller activates, a "
                                     "recorder finds its topics)", 0.0, 600.0)
    wait_for_subscribers: str = _param("", "hold sim time at 0 until these nodes (comma-separated "
                                           "names, e.g. grasp_recorder) subscribe to joint_states: "
                                           "a recorder or a watcher then sees the run from its "
                                           "first step, however slow discovery is")
    lockstep: bool = _param(False, "advance sim time one physics step at a time, each once a "
                                   "command arrived after the last one (the controller answered): "
                                   "the closed loop then does not depend on CPU speed; "
                                   "rate_factor and clock_period do not apply")
    lockstep_timeout: float = _param(10.0, "lockstep: wall seconds to wait for a command before "
                                           "stepping anyway (a dead controller), with a warning",
                                     0.01, 3600.0)
    explore: bool = _param(False, "drive the robot with a seeded exploration policy, published "
                                  "on command (record a dataset without a controller)")
    explore_rest_probability: float = _param(0.0, "explore: chance per step of starting a rest, a "
                                                  "zero command held for 0.5-2 s (0: never; 0.02: "
                                                  "about 20% of the steps at rest)", 0.0, 1.0)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad value (ranges and choices)."""
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if meta["choices"] is not None and value not in meta["choices"]:
                raise ValueError(f"{f.name}={value!r}: choose one of {list(meta['choices'])}")
            if meta["low"] is not None and not (meta["low"] <= value <= meta["high"]):
                raise ValueError(f"{f.name}={value!r}: must lie in [{meta['low']}, {meta['high']}]")
        if round(NS / self.physics_rate_hz) < round(self.clock_period * NS):
            raise ValueError(f"physics_rate_hz={self.physics_rate_hz}: one step must last at least "
                             f"clock_period={self.clock_period} s")


# --- the simulation, free of ROS ------------------------------------------------------------

@dataclass
class Event:
    """Something the node publishes: ``kind`` is joints, image, start, end, done or watchdog."""

    kind: str
    t_ns: int
    data: dict[str, Any] = field(default_factory=dict)


class SimCore:
    """Episodes, zero-order hold, watchdog and sensor schedule of the sim, in integer sim nanoseconds.

    ``command(values, t_ns)`` holds a command; ``advance(t_ns)`` runs every physics step and camera
    frame due up to ``t_ns`` and returns what happened as ``Event`` s, in time order.
    """

    def __init__(self, settings: SimSettings):
        settings.validate()
        self.settings = settings
        self.world = make_world(settings.env, 1.0 / settings.physics_rate_hz, settings.horizon,
                                settings.success_radius, settings.image_size)
        self.env = self.world.env   # the simulator itself (NavEnv or ArmEnv)
        self.step_ns = round(NS / settings.physics_rate_hz)
        self.frame_ns = round(NS / settings.camera_rate_hz)
        self.timeout_ns = round(settings.command_timeout * NS)
        self.max_episode_ns = round(settings.max_episode_time * NS)
        self.now_ns = 0
        self.next_step_ns = self.next_frame_ns = 0
        self.held = np.zeros(len(self.world.joint_names))
        self.last_command_ns: Optional[int] = None
        self.watchdog_tripped = False
        self.episode_index, self.successes = -1, 0
        self.episode_start_ns: Optional[int] = None
        self.steps = 0
        self.done = False
        self.pending: list[Event] = []
        self._start_episode(0)

    # -- inputs ---------------------------------------------------------------------------

    def command(self, values, t_ns: int, problem: Optional[str] = None) -> Optional[str]:
        """Hold ``values`` (clipped to the world's bounds) from now on; if malformed, or the
        message they came in was (``problem`` says why), hold zero and say why."""
        a = np.asarray(values, dtype=np.float64).reshape(-1)
        low, high = self.world.action_low, self.world.action_high
        if problem is None and a.shape != low.shape:
            problem = f"expected {low.size} values, got {a.size}"
        elif problem is None and not np.isfinite(a).all():
            problem = f"non-finite values {a.tolist()}"
        self.held = np.zeros_like(low) if problem else np.clip(a, low, high)
        self.last_command_ns = t_ns
        if self.episode_start_ns is None and not self.done:
            self.episode_start_ns = t_ns   # the first episode's clock starts with the first command
        return problem

    # -- time -----------------------------------------------------------------------------

    def advance(self, t_ns: int) -> list[Event]:
        """Run everything due in (now, t_ns]; physics before the camera frame of the same instant."""
        events, self.pending = self.pending, []
        while min(self.next_step_ns, self.next_frame_ns) <= t_ns:
            if self.next_step_ns <= self.next_frame_ns:
                self._physics_step(self.next_step_ns, events)
                self.next_step_ns += self.step_ns
            else:
                events.append(Event("image", self.next_frame_ns,
                                    {"position": self.world.position}))
                self.next_frame_ns += self.frame_ns
        self.now_ns = max(self.now_ns, t_ns)
        return events

    def applied_command(self, t_ns: int) -> np.ndarray:
        """The command a step at ``t_ns`` applies: the held one, or zero when the watchdog trips."""
        fresh = self.last_command_ns is not None and not self._timed_out(t_ns)
        return self.held if fresh else np.zeros_like(self.held)

    def _timed_out(self, t_ns: int) -> bool:
        return self.last_command_ns is not None and t_ns - self.last_command_ns > self.timeout_ns

    def _physics_step(self, t_ns: int, events: list[Event]) -> None:
        """One env step at ``t_ns``; joint_states then show the state after it (or, when the step
        ended an episode, the next episode's start: its final position is in the end report)."""
        action = self.applied_command(t_ns)
        tripped = self._timed_out(t_ns)
        if tripped != self.watchdog_tripped:
            self.watchdog_tripped = tripped
            events.append(Event("watchdog", t_ns, {"tripped": tripped}))
        if self.episode_start_ns is not None and self.episode_start_ns < t_ns and not self.done:
            self.world.step(action)
            self.steps += 1
            if self.world.succeeded() or t_ns - self.episode_start_ns >= self.max_episode_ns:
                self._end_episode(t_ns, events)
        events.extend(self.pending)
        self.pending = []
        events.append(Event("joints", t_ns, {"position": self.world.position.tolist(),
                                             "velocity": self.world.velocity.tolist(),
                                             "command": action.tolist()}))

    # -- episodes -------------------------------------------------------------------------

    def _start_episode(self, t_ns: int) -> None:
        self.episode_index += 1
        seed = self.settings.seed + self.episode_index
        start, goal = self.world.reset(seed)
        self.steps = 0
        # Later episodes start at once: the controller is already running.
        self.episode_start_ns = t_ns if self.episode_index > 0 else None
        self.pending.append(Event("start", t_ns, self._report(t_ns, start=start.tolist(),
                                                               goal=goal.tolist())))

    def _end_episode(self, t_ns: int, events: list[Event]) -> None:
        success = self.world.succeeded()
        self.successes += int(success)
        duration = (t_ns - self.episode_start_ns) / NS
        events.append(Event("end", t_ns, self._report(
            t_ns, success=success, time_to_goal=duration if success else None, duration=duration,
            steps=self.steps, final_distance=self.world.distance_to_goal(),
            final_position=self.world.position.tolist(), goal=self.world.goal.tolist())))
        finished = self.episode_index + 1
        if self.settings.episodes and finished >= self.settings.episodes:
            self.done = True
            events.append(Event("done", t_ns, {
                "event": "done", "episodes": finished, "successes": self.successes,
                "success_rate": self.successes / finished, "t": t_ns / NS}))
        else:
            self._start_episode(t_ns)

    def _report(self, t_ns: int, **fields) -> dict[str, Any]:
        kind = "start" if "start" in fields else "end"
        return {"event": kind, "episode": self.episode_index,
                "seed": self.settings.seed + self.episode_index, "env": self.settings.env,
                "t": t_ns / NS, **fields}


# --- the node -------------------------------------------------------------------------------

# Image, goals and command use the controller's profiles (qos.py), so the two always match.
REPORTS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
# Reliable publishers match best-effort and reliable subscribers alike.
JOINTS_QOS = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
# rclcpp's ClockQoS: only the newest time matters.
CLOCK_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT)


def stamp(t_ns: int) -> Time:
    return Time(sec=t_ns // NS, nanosec=t_ns % NS)


def _descriptor(f: dataclasses.Field) -> ParameterDescriptor:
    meta = f.metadata
    d = ParameterDescriptor(description=meta["doc"], read_only=True)
    if meta["choices"] is not None:
        d.additional_constraints = "one of: " + ", ".join(meta["choices"])
    if meta["low"] is not None and isinstance(f.default, float):
        d.floating_point_range = [FloatingPointRange(from_value=float(meta["low"]),
                                                     to_value=float(meta["high"]))]
    elif meta["low"] is not None:
        d.integer_range = [IntegerRange(from_value=int(meta["low"]), to_value=int(meta["high"]))]
    return d


def image_msg(rgb: np.ndarray, t_ns: int, frame: str = "camera") -> Image:
    """sensor_msgs/Image (rgb8) of an RGB uint8 [H, W, 3] array, stamped ``t_ns``."""
    return rgb_to_image(rgb, "rgb8", Header(stamp=stamp(t_ns), frame_id=frame))


class SimNode(Node):
    """Thin ROS shell around ``SimCore``: parameters in, messages out, a wall-clock tick.

    Raises ``ValueError`` or rclpy's ``ParameterException`` on a bad parameter.
    """

    def __init__(self, **kwargs):
        super().__init__("grasp_sim", **kwargs)
        for f in dataclasses.fields(SimSettings):
            self.declare_parameter(f.name, f.default, _descriptor(f))
        self.settings = SimSettings(**{f.name: self.get_parameter(f.name).value
                                       for f in dataclasses.fields(SimSettings)})
        self.core = SimCore(self.settings)
        s = self.settings
        self.quantum_ns = round(s.clock_period * NS)
        self.max_lag_ns = max(self.core.step_ns, self.quantum_ns)
        self.finished = False
        self.rejected_commands = 0

        self.clock_pub = self.create_publisher(ClockMsg, "/clock", CLOCK_QOS)
        self.image_pub = self.create_publisher(Image, "image", qos.SENSOR)
        self.joints_pub = self.create_publisher(JointState, "joint_states", JOINTS_QOS)
        self.goal_pub = self.create_publisher(JointGoal, "/goal_state", qos.GOAL)
        self.goal_image_pub = self.create_publisher(Image, "/goal_image", qos.GOAL)
        self.episode_pub = self.create_publisher(String, "~/episode", REPORTS)
        self._command_sub = self.create_subscription(Float64MultiArray, "command",
                                                     self._on_command, qos.COMMAND)
        self._trajectory_sub = self.create_subscription(JointTrajectory, "joint_trajectory",
                                                        self._on_trajectory, qos.COMMAND)
        world = self.core.world
        self.explorer = OUExplorer(world.action_low, world.action_high, world.joint_low,
                                   world.joint_high, world.dt, s.seed,
                                   rest_probability=s.explore_rest_probability
                                   ) if s.explore else None
        self._explore_pub = (self.create_publisher(Float64MultiArray, "command", qos.COMMAND)
                             if s.explore else None)
        self._awaited = {n.strip() for n in s.wait_for_subscribers.split(",") if n.strip()}
        self._waiting = s.wait_for_controller or bool(self._awaited)
        self._publisher_seen: Optional[float] = None
        self._commands = 0                  # received so far
        self._answered_from = 0             # lockstep: the count when the clock last advanced
        self._stepped_wall: Optional[float] = None

        self._anchor_wall, self._anchor_ns = time.monotonic(), 0
        wall_tick = max(s.clock_period / s.rate_factor, MIN_WALL_TICK_S)
        self.create_timer(wall_tick, self._tick, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(
            f"simulating {world.summary()}: camera {s.camera_rate_hz:g} Hz, "
            f"x{s.rate_factor:g} real time, episodes: {s.episodes or 'endless'}"
            + (", driven by the exploration policy" if s.explore else "")
            + (f"; sim time starts when {self._command_sub.topic_name} or "
               f"{self._trajectory_sub.topic_name} has a publisher"
               if s.wait_for_controller else "")
            + (f"; sim time starts when {sorted(self._awaited)} subscribe to {self.joints_pub.topic_name}"
               if self._awaited else ""))
        self._publish(self.core.advance(0))

    # -- time -------------------------------------------------------------------------------

    def _tick(self) -> None:
        wall = time.monotonic()
        if self._waiting and not self._may_start(wall):
            return
        if self.settings.lockstep:
            self._lockstep(wall)
            return
        target = self._anchor_ns + int((wall - self._anchor_wall) * self.settings.rate_factor * NS)
        target -= target % self.quantum_ns
        if target - self.core.now_ns > self.max_lag_ns:
            # Starved of CPU: slow sim time down rather than skip physics steps.
            target = self.core.now_ns + self.max_lag_ns - self.max_lag_ns % self.quantum_ns
            self._anchor_ns, self._anchor_wall = target, wall
        if target <= self.core.now_ns:
            return
        self._publish(self.core.advance(target))
        self.clock_pub.publish(ClockMsg(clock=stamp(target)))

    def _lockstep(self, wall: float) -> None:
        """One physics step per command: the first at once, each later one when a command came
        after the clock last moved (or, with a warning, after ``lockstep_timeout``)."""
        if self._stepped_wall is not None and self._commands == self._answered_from:
            if wall - self._stepped_wall < self.settings.lockstep_timeout:
                return
            self.get_logger().warning(f"lockstep: no command for {self.settings.lockstep_timeout:g} "
                                      "s of wall time: stepping anyway", throttle_duration_sec=5.0)
        target = self.core.now_ns + self.core.step_ns
        self._answered_from, self._stepped_wall = self._commands, wall
        self._publish(self.core.advance(target))
        self.clock_pub.publish(ClockMsg(clock=stamp(target)))

    def _may_start(self, wall: float) -> bool:
        """Whether sim time starts now: the controller has appeared (``wait_for_controller``) and
        every awaited node subscribes to joint_states."""
        if self.settings.wait_for_controller and not self._controller_appeared(wall):
            return False
        subscribed = {i.node_name for i in self.get_subscriptions_info_by_topic(self.joints_pub.topic_name)}
        if not self._awaited <= subscribed:
            return False
        self._waiting = False
        self._anchor_wall = wall
        self.get_logger().info("sim time starts"
                               + (": a command publisher appeared"
                                  if self.settings.wait_for_controller else "")
                               + (f"; {sorted(self._awaited)} subscribe" if self._awaited else ""))
        return True

    def _controller_appeared(self, wall: float) -> bool:
        """Whether a command publisher (of either kind) has existed for ``start_delay``."""
        if not any(self.count_publishers(sub.topic_name) for sub in (self._command_sub, self._trajectory_sub)):
            self._publisher_seen = None
            return False
        self._publisher_seen = self._publisher_seen or wall
        return wall - self._publisher_seen >= self.settings.start_delay

    # -- inputs -----------------------------------------------------------------------------

    def _on_command(self, msg: Float64MultiArray) -> None:
        self._hold(msg.data)

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        """The first point's velocities, in the world's joint order."""
        names = list(self.core.world.joint_names)
        if not msg.points or not len(msg.points[0].velocities):
            self._hold([], "joint_trajectory without velocities in its first point")
        elif msg.joint_names and sorted(msg.joint_names) != sorted(names):
            self._hold([], f"joint_trajectory names {list(msg.joint_names)}, expected {names}")
        else:
            velocities = list(msg.points[0].velocities)
            if msg.joint_names and len(velocities) == len(names):
                velocities = [velocities[list(msg.joint_names).index(n)] for n in names]
            self._hold(velocities)

    def _hold(self, values, problem: Optional[str] = None) -> None:
        self._commands += 1
        reason = self.core.command(values, self.core.now_ns, problem)
        if reason:
            self.rejected_commands += 1
            self.get_logger().warning(f"malformed command ({reason}): holding zero",
                                      throttle_duration_sec=2.0)

    # -- outputs ----------------------------------------------------------------------------

    def _publish(self, events: list[Event]) -> None:
        for event in events:
            getattr(self, f"_on_{event.kind}")(event)
        # The exploration command for the next step goes out after the step's sensor messages,
        # as a controller's would: a recording receives it after the frame it answers.
        # The policy steps once per physics step; only its newest command would be applied.
        commands = [self.explorer(e.data["position"]) for e in events
                    if self.explorer is not None and e.kind == "joints"]
        if commands:
            self._explore_pub.publish(Float64MultiArray(data=commands[-1].tolist()))

    def _on_joints(self, event: Event) -> None:
        msg = JointState(name=list(self.core.world.joint_names), position=event.data["position"],
                         velocity=event.data["velocity"])
        msg.header.stamp = stamp(event.t_ns)
        msg.header.frame_id = "world"
        self.joints_pub.publish(msg)

    def _on_image(self, event: Event) -> None:
        self.image_pub.publish(image_msg(self.core.world.render_at(event.data["position"]),
                                         event.t_ns))

    def _on_start(self, event: Event) -> None:
        d = event.data
        goal = JointGoal(name=list(self.core.world.joint_names), position=d["goal"])
        goal.header.stamp = stamp(event.t_ns)
        goal.header.frame_id = "world"
        self.goal_pub.publish(goal)
        self.goal_image_pub.publish(image_msg(self.core.world.render_at(d["goal"]), event.t_ns))
        self._report(d, f"episode {d['episode']} (seed {d['seed']}): "
                        f"start {_fmt(d['start'])} goal {_fmt(d['goal'])}")

    def _on_end(self, event: Event) -> None:
        d = event.data
        outcome = (f"reached the goal in {d['time_to_goal']:.2f} s ({d['steps']} steps)"
                   if d["success"] else
                   f"FAILED after {d['duration']:.2f} s, {d['final_distance']:.3f} m from the goal")
        self._report(d, f"episode {d['episode']}: {outcome}")

    def _on_done(self, event: Event) -> None:
        d = event.data
        self._report(d, f"done: {d['successes']}/{d['episodes']} episodes reached the goal")
        self.finished = self.settings.exit_when_done

    def _on_watchdog(self, event: Event) -> None:
        if event.data["tripped"]:
            self.get_logger().warning(f"no command for {self.settings.command_timeout} s: holding zero")
        else:
            self.get_logger().info("commands resumed")

    def _report(self, data: dict, text: str) -> None:
        self.episode_pub.publish(String(data=json.dumps(data)))
        self.get_logger().info(text)


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:+.2f}" for v in values) + ")"


FLUSH_S = 0.5  # after the last report, time for reliable messages to reach their readers


def run(args: Optional[list[str]] = None) -> int:
    """Spin the node until SIGINT/SIGTERM or, with exit_when_done, its last episode; exit status.

    The first SIGINT or SIGTERM ends the spin, later ones are ignored (``interrupts.flag_once``),
    and the node, executor and context are released in order before returning: a terminal's
    second Ctrl-C must not turn a clean exit into a traceback.
    """
    torch.set_num_threads(1)   # the env steps tiny tensors; leave the cores to the controller
    stopped = interrupts.flag_once()
    interrupts.exit_with_parent()
    context = Context()
    node = executor = None
    try:
        rclpy.init(args=args, context=context, signal_handler_options=SignalHandlerOptions.NO)
        try:
            node = SimNode(context=context)
        except (ValueError, ParameterException) as exc:   # out of range, wrong type
            rclpy.logging.get_logger("grasp_sim").fatal(f"bad parameters: {exc}")
            return 2
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        while not (node.finished or stopped()):
            executor.spin_once(timeout_sec=0.1)
        flush_until = time.monotonic() + FLUSH_S
        try:
            while time.monotonic() < flush_until and not stopped():
                executor.spin_once(timeout_sec=0.05)
        except RuntimeError as exc:
            # The run is over and reported; rclpy once failed to take an incoming message here
            # (a pybind11 conversion error), which must not turn a finished run into a failure.
            node.get_logger().warning(f"after the last episode, while flushing: {exc}")
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        interrupts.ignore()
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        node = executor = None
        rclpy.try_shutdown(context=context)
        context.destroy()
    return 0


def main() -> NoReturn:
    leave(run(sys.argv))


if __name__ == "__main__":
    main()

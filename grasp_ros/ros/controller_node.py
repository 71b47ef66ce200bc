"""``grasp_controller``: receding-horizon control with a learned world model, as a lifecycle node.

The node only converts messages and calls ``grasp_ros.control``: its control timer ticks a
``CycleRunner``, which runs the ``ControlLoop`` cycle on its own threads (the executor stays free
for inputs, services and parameters while the planner works) and publishes through ``_publish``.
Parameters are declared in ``params.py``, QoS in ``qos.py``, conversions in ``conversions.py``,
the checks of its wiring to the robot in ``wiring.py``, the command message of each
``command_interface`` in ``command_output.py``; which goal messages make the goal is
``control.goal_intake``.

Lifecycle (rclpy.lifecycle; without a lifecycle manager use ``--autostart`` or ``autostart:=true``):

* configure: check the parameters, load the world model and the planner on ``device``, create
  the subscriptions, publishers, the ``~/reset`` service and the 1 Hz diagnostics timer (on the
  steady clock, so it runs when /clock stops; the clock watchdog is the runner's own thread,
  so it runs when a long callback holds up the executor too). A bad
  parameter or model fails the transition with the reason in the log; the node stays
  unconfigured, alive, and can be configured again (model sources are read-only: a bad one
  needs a restart). With autostart the process exits instead, with status 1.
* activate: the runner's threads and the control timer, at ``control_rate_hz`` on the node's
  clock (``use_sim_time`` makes it follow /clock).
* deactivate: stop the timer, then the runner (after its cycle in progress), then publish one
  zero command.
* cleanup / shutdown: release what configure made (shutdown from active sends zero first).
* SIGINT / SIGTERM (``main``): one zero command at once (``halt``), then the shutdown
  transition; one during start-up lets configure finish and leaves the node inactive.

Interfaces (relative names: remap them; ``~/`` is the node's private namespace):

* in: ``image`` (sensor_msgs/Image of any size in the encodings ``models.preprocess`` reads:
  rgb/bgr/rgba/bgra/mono 8 and 16 bit, raw Bayer mosaics, 4:2:2 YUV), made the
  model's input as the rosbag importer makes it, by ``image_crop``; with ``image_transport``
  compressed: sensor_msgs/CompressedImage on ``image/compressed``; sensor-data QoS) or
  ``joint_states`` (sensor_msgs/JointState, sensor-data QoS; several publishers may each name
  some of the joints, ``grasp_ros.models.joint_states``), whichever ``observation`` names;
  the goal on ``~/goal_state`` (grasp_ros/JointGoal) or ``~/goal_image`` (sensor_msgs/Image),
  reliable, read both transient local and volatile (``qos.goal_readers``; each message once): the
  newest wins, by header stamp across the two kinds (unstamped: now), and at one
  stamp the kind the model observes (a kind the model cannot encode is ignored with a warning:
  an image-only model takes goal images).
* out: ``command`` (std_msgs/Float64MultiArray, a ros2_control forward_command_controller's
  input), ``joint_trajectory`` (trajectory_msgs/JointTrajectory, ``control.trajectory``) or
  ``cmd_vel`` (geometry_msgs/Twist or TwistStamped), by ``command_interface``;
  ``~/plan_diagnostics`` (grasp_ros/PlanDiagnostics, every cycle);
  ``~/late_plans`` (grasp_ros/PlanDiagnostics of a plan that missed its cycle's deadline, stamped
  with that cycle's time, when it is done: it warm-starts the next cycle);
  ``~/plan`` (grasp_ros/Plan, when a plan was solved); ``~/predicted_path`` (nav_msgs/Path, when
  the model gives positions); ``/diagnostics`` (diagnostic_msgs/DiagnosticArray, about 1 Hz,
  and a last status when cleanup, shutdown or an error releases the node).
* service: ``~/reset`` (std_srvs/Trigger) clears the warm start.
"""
from __future__ import annotations

if __name__ == "__main__":   # a node's process (python -m), before its heavy imports
    from grasp_ros.ros.interrupts import end_at_once_on_stop_signals
    end_at_once_on_stop_signals()

import argparse
import functools
import gc
import math
import os
import sys
import threading
import traceback
from typing import Any, Callable, Optional

import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Path
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.context import Context
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.serialization import deserialize_message
from rclpy.signals import SignalHandlerOptions
from rclpy.utilities import remove_ros_args
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from grasp_ros.msg import JointGoal, Plan, PlanDiagnostics

from ..control import (CycleResult, CycleRunner, CycleStats, Status, StatusLog, build_control_loop,
                       lead_hint, resolve_device)
from ..control.goal_intake import GoalIntake
from ..models.contract import WorldModelError, error_text
from ..models.joint_layout import position_columns
from ..models.joint_states import JointStateMerger
from ..models.sources import SourceLog, conflict_text
from ..models.text import shorten
from ..process_exit import leave
from . import delivery, interrupts, params, qos, wiring
from .command_output import CommandOutput
from .conversions import (compressed_image_to_rgb, diagnostic_array, goal_joint_values, image_to_rgb,
                          path_message, stamp_ns, stamp_seconds, to_time)
from .parameter_services import BoundedParameterService
from .publishers import Once, PublisherNames
from .sim_clock import ClockFollower

MAX_IMAGE_MESSAGE_BYTES = 64 * 2**20
"""Largest image message read (camera and goal image): a 4K camera's 8-bit RGBA frame is 33 MB,
its 16-bit RGB 50 MB. A larger one is refused unread (``GraspController._bounded``)."""
MAX_GOAL_STATE_BYTES = 2**20
"""Largest goal state read: thousands of joints' names and positions."""
MAX_JOINT_STATES_BYTES = 2**20
"""Largest joint_states message read, as a goal state: a 65 MB one of 3 million names held the
executor 2 s a message (an adversarial audit; a reliable reader gets them whole)."""
GOAL_TOPICS = {"joints": ("goal_state", "goal_image", "goal state"),
               "image": ("goal_image", "goal_state", "goal image")}
"""Each goal kind's topic, the other kind's, and its name in a refusal."""
DIAGNOSTICS_PERIOD = 1.0
"""Seconds (steady clock) between /diagnostics messages."""
LAST_COMMAND_ACK_S = 3.5
"""How long the shutdown waits for the last zero command's acknowledgement (one Fast DDS
heartbeat period and some; ``GraspController._deliver_last_command``)."""


def _said(transition):
    """A transition callback whose exception is logged with its traceback before rclpy turns it
    into a failed transition: rclpy itself says nothing, and a manager sees only "failed"."""
    @functools.wraps(transition)
    def run(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            return transition(self, state)
        except Exception:
            self.get_logger().error(f"{transition.__name__} raised:\n{traceback.format_exc()}")
            raise
    return run


class GraspController(LifecycleNode):
    """The controller node; see the module docstring."""

    def __init__(self, node_name: str = params.NODE_NAME, **kwargs: Any):
        services = kwargs.pop("start_parameter_services", True)
        super().__init__(node_name, start_parameter_services=False, **kwargs)
        if services:    # rclpy's, with a bound on one request (a peer's 1 MB one held the executor 29 s)
            self._parameter_service = BoundedParameterService(self)
        # start-up values refused: configure reports them
        self._refused = params.declare_all(self, {"cpu_capability": params.cpu_capability()})
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        # One control cycle or one lifecycle transition at a time, whatever thread asks (an
        # executor's or the process's main thread): a transition waits for the cycle in
        # progress, and a cycle never sees half-released resources.
        self._lock = threading.RLock()
        # Publishing (from the runner's cycle and watchdog threads) against the transitions
        # that stop it: a transition flips _active under this lock, then stops the runner.
        self._publish_lock = threading.Lock()
        self._values: dict[str, Any] = {}
        self._loop = None
        self._runner: Optional[CycleRunner] = None
        self._stats: Optional[CycleStats] = None
        self._health_pub = None    # /diagnostics, from configure to cleanup
        self._silent_input = ""    # an input published as another type (checked about 1 Hz)
        self._timer = None
        self._tick_guard = None    # with the clock follower: the timer's tick, run after the inputs
        self._tick_time: Optional[float] = None
        self._active = False
        self._halted = False       # stopped commanding by ``halt``, still active for the lifecycle
        self._status_log = StatusLog()
        self._made: list = []      # (destroy function, entity) of everything configure made
        self._inputs: list[tuple[str, str]] = []   # (topic, type) of the input subscriptions
        self._outputs: list[tuple[str, str]] = []  # (topic, type) of the command publisher
        self._output: Optional[CommandOutput] = None
        self._told_mismatches = False
        self._frame_delivery: Optional[delivery.DeliveryCount] = None    # with a camera
        self._told_frame_loss = False
        # A simulator's /clock (1 kHz) on a thread of its own, not waking the executor.
        self._clock_follower = ClockFollower(self) if self.get_parameter("use_sim_time").value else None

    # -- lifecycle --------------------------------------------------------------------------

    @_said
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            values = params.read_all(self)
            # (a start-up value refused is also invalid among the values: said once)
            problems = list(dict.fromkeys([*self._refused.values(), *params.validate_all(values)]))
            if not problems:
                try:
                    self._build(values)
                except Exception as exc:  # model factories run user code: any error fails configure
                    self._release()
                    problems = [error_text(exc)]
            if problems:
                self.get_logger().error("configure failed: " + "; ".join(problems))
                return TransitionCallbackReturn.FAILURE
        self.get_logger().info(
            f"configured: model {values['model']!r} on {self._loop.planner.device}, planner "
            f"{values['planner']!r} H={values['horizon']}, {values['control_rate_hz']:g} Hz, "
            f"inputs {self._inputs_text()}, output {self._output_text()}")
        if self._loop.goal_checker is not None:
            self.get_logger().info(self._loop.goal_checker.describe())
        period, ranges = wiring.period_warning(values, self._card), self._loop.goal_target.range_warning()
        for warning in (self.topic_mismatches() + self.action_range_warnings()
                        + [w for w in (period, ranges) if w]):
            self.get_logger().warning(warning)
        return super().on_configure(state)

    @_said
    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)   # enable the lifecycle publishers first
        with self._lock:
            self._loop.reset()                # a plan from before deactivation is out of date
            self._output.restart()            # so is where a stop held the robot then
            with self._publish_lock:
                self._active, self._halted = True, False
            self._runner.start()
            self._timer = self.create_timer(1.0 / self._values["control_rate_hz"], self._on_timer)
            if self._clock_follower is not None:
                self._tick_guard = self.create_guard_condition(self._on_tick_guard)
        self.get_logger().info("active: controlling")
        return result

    @_said
    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self._stop("deactivated")
        self.get_logger().info("inactive: timer stopped, zero command sent")
        return super().on_deactivate(state)

    @_said
    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self._release(("ok", "unconfigured: not controlling", "unconfigured"))
        return super().on_cleanup(state)

    @_said
    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            was_active = self._active or self._halted
            self._stop("shutting down")
            self._release(("ok", "shut down: not controlling", "finalized"))
        self.get_logger().info("shut down" + (": zero command sent" if was_active else ""))
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self._stop("error")
            self._release(("error", "lifecycle error: not controlling", "error"))
        return super().on_error(state)

    def _build(self, values: dict[str, Any]) -> None:
        """Load model and planner, check they fit the parameters, create the ROS entities."""
        if values["torch_threads"] > 0:
            torch.set_num_threads(values["torch_threads"])
        device, warning = resolve_device(values["device"])
        if warning:
            self.get_logger().warning(warning)
        knobs, ignored = params.knobs_for(values["planner"], values)
        if ignored:
            self.get_logger().warning(f"planner {values['planner']!r} has no setting for "
                                      f"{', '.join(ignored)}: ignored")
        config, spec = params.control_config(values), params.model_spec_of(values)
        loop = build_control_loop(spec, values["planner"], values["horizon"], config, knobs,
                                  values["seed"], device, values["allow_python_models"])
        problem = wiring.check_model_fit(values, loop.card)
        if problem:     # in full: our own words, with the fix at their end
            raise WorldModelError(problem)
        self._values, self._loop = values, loop
        self._stats = CycleStats(period=config.period, tolerance=values["period_tolerance"])
        self._card = loop.card
        self._crop = values["image_crop"] or (loop.card.image.crop if loop.card.image else "center")
        self._joints = (None if loop.card.joints is None
                        else JointStateMerger(loop.card.joints.names, loop.card.joints.fields))
        self._goals = GoalIntake(loop, observes_image=loop.card.image is not None)
        self._runner = CycleRunner(loop, self._publish, self._publish_late,
                                   sim_time=self.get_parameter("use_sim_time").value, clock=self._now)
        self._status_log = StatusLog()
        self._publisher_names = PublisherNames(self)
        self._make_entities(values)

    def _make_entities(self, values: dict[str, Any]) -> None:
        publisher = self._command_publisher(*wiring.OUTPUTS[values["command_interface"]])
        self._output = CommandOutput(values, self._card, publisher, self.get_logger(), self._now)
        self._diagnostics_pub = self._lifecycle_pub(PlanDiagnostics, "~/plan_diagnostics", qos.REPORT)
        self._late_pub = self._lifecycle_pub(PlanDiagnostics, "~/late_plans", qos.REPORT)
        self._plan_pub = self._lifecycle_pub(Plan, "~/plan", qos.REPORT)
        self._path_pub = self._lifecycle_pub(Path, "~/predicted_path", qos.REPORT)
        # /diagnostics is not a lifecycle publisher: it reports an inactive node too.
        self._health_pub = self._remember(self.destroy_publisher, self.create_publisher(
            DiagnosticArray, "/diagnostics", qos.REPORT))
        card = self._card
        refuse_image = functools.partial(self._refuse_unread, "image")
        if card.image is not None and values["image_transport"] == "compressed":
            # image_transport's naming: the base topic as remapped, then the transport's suffix.
            self._image_to_rgb = compressed_image_to_rgb
            self._image_topic = self.resolve_topic_name("image") + "/compressed"
            self._image_reader = self._subscribe(
                CompressedImage, self._image_topic, self._counted(
                    self._bounded(CompressedImage, self._on_image, refuse_image, with_info=True)),
                qos.overridable(qos.SENSOR), qos_overriding_options=qos.SENSOR_OVERRIDES, raw=True)
        elif card.image is not None:
            self._image_to_rgb = image_to_rgb
            self._image_topic = self.resolve_topic_name("image")
            self._image_reader = self._subscribe(
                Image, "image", self._counted(self._bounded(Image, self._on_image, refuse_image, with_info=True)),
                qos.overridable(qos.SENSOR), qos_overriding_options=qos.SENSOR_OVERRIDES, raw=True)
        self._cameras = SourceLog()     # who sent the camera's frames (two cannot be told apart)
        # Joint states: when the model encodes joints, and for a joint trajectory's positions.
        if card.joints is not None or values["command_interface"] == "joint_trajectory":
            self._subscribe(JointState, "joint_states", self._bounded(
                JointState, self._on_joint_states, functools.partial(self._refuse_unread, "joint_states"),
                MAX_JOINT_STATES_BYTES, "a joint_states message", with_info=True),
                qos.overridable(qos.JOINT_STATES), qos_overriding_options=qos.SENSOR_OVERRIDES, raw=True)
            self._joint_states_topic = self.resolve_topic_name("joint_states")
        once_state, once_image = Once(), Once()     # one of each message both readers get
        for profile, options in qos.goal_readers():
            self._subscribe(JointGoal, "~/goal_state", once_state(self._bounded(
                JointGoal, self._on_goal_state, self._unread_goal("joints"), MAX_GOAL_STATE_BYTES,
                "a goal state")), profile, raw=True, **options)
            self._subscribe(Image, "~/goal_image", once_image(self._bounded(
                Image, self._on_goal_image, self._unread_goal("image"))), profile, raw=True, **options)
        self._remember(self.destroy_service, self.create_service(
            Trigger, "~/reset", self._on_reset, qos_profile=qos.SERVICE))
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._remember(self.destroy_timer, self.create_timer(
            DIAGNOSTICS_PERIOD, self._on_diagnostics, clock=steady))

    def destroy_node(self) -> None:
        """Without a shutdown transition first (a test, a crashing launch): stop the cycles."""
        with self._publish_lock:
            self._active = False
        if self._runner is not None:
            self._runner.stop()
        if self._clock_follower is not None:
            self._clock_follower.stop()
            self._clock_follower = None
        super().destroy_node()

    def _lifecycle_pub(self, msg_type, topic: str, profile):
        return self._remember(self.destroy_lifecycle_publisher,
                              self.create_lifecycle_publisher(msg_type, topic, profile))

    def _command_publisher(self, msg_type, topic: str):
        """The command's publisher, remembered for ``type_mismatches``."""
        publisher = self._lifecycle_pub(msg_type, topic, qos.COMMAND)
        self._outputs.append((publisher.topic_name, wiring.type_name(msg_type)))
        return publisher

    def _remember(self, destroy, entity):
        self._made.append((destroy, entity))
        return entity

    def _subscribe(self, msg_type, topic: str, callback, qos_profile, **options):
        """An input subscription, remembered for ``type_mismatches``."""
        subscription = self._remember(self.destroy_subscription, self.create_subscription(
            msg_type, topic, callback, qos_profile, **options))
        read = (subscription.topic_name, wiring.type_name(msg_type))
        if read not in self._inputs:
            self._inputs.append(read)
        return subscription

    def _counted(self, callback):
        """The camera subscription's ``callback`` (data, MessageInfo), each delivery counted
        first (``delivery``: frames that never arrive, by their publishers' numbers)."""
        count = self._frame_delivery = delivery.DeliveryCount()

        def take(data, info) -> None:
            count.note(info, len(data))
            callback(data, info)
        return take

    def type_mismatches(self) -> list[str]:
        """Peers of another message type on this node's topics: inputs that receive nothing
        (``wiring.silent_inputs``), then commands never read (``wiring.unread_outputs``)."""
        return self._peers_of_another_type()[0]

    def _peers_of_another_type(self) -> tuple[list[str], list[str]]:
        """(``type_mismatches``, the silent inputs among them)."""
        silent = wiring.silent_inputs(self, self._inputs)
        return silent + wiring.unread_outputs(self, self._outputs), silent

    def _release(self, last_word: Optional[tuple[str, str, str]] = None) -> None:
        """Destroy what configure made and drop the model (cleanup, shutdown, error, failed
        configure); the command's writer once its readers have the last command. ``last_word``
        (level, message, lifecycle state): a last /diagnostics status before it goes quiet, so
        a monitor reads why the node stopped reporting rather than only that it did (as
        diagnostic_updater says "Node shut down")."""
        self._deliver_last_command()
        if last_word is not None and self._health_pub is not None:
            level, message, lifecycle = last_word
            self._report_health(level, message, {"lifecycle": lifecycle})
        for destroy, entity in reversed(self._made):
            destroy(entity)
        self._made.clear()
        self._output = None
        self._inputs.clear()
        self._outputs.clear()
        self._loop, self._stats, self._runner, self._health_pub = None, None, None, None
        self._silent_input, self._frame_delivery, self._told_frame_loss = "", None, False

    def _deliver_last_command(self) -> None:
        """Keep the command's writer until its readers acknowledge the last command (the
        zero), for at most ``LAST_COMMAND_ACK_S``: a writer destroyed earlier takes a zero that a
        busy reader has not yet taken (or that DDS must repeat) with it, and the robot keeps its
        last moving command (README: the audits' counts). Fast DDS acknowledges at its writer's
        next heartbeat, 3 s apart by default; with nothing unacknowledged there is no wait."""
        publisher = None if self._output is None else self._output.publisher
        if publisher is None or not publisher.get_subscription_count():
            return
        if not publisher.wait_for_all_acked(Duration(seconds=LAST_COMMAND_ACK_S)):
            self.get_logger().warning(f"the last zero command was not acknowledged within "
                                      f"{LAST_COMMAND_ACK_S:g} s by every reader of {publisher.topic_name}")

    def _stop(self, reason: str) -> None:
        """Stop controlling: the control timer, one zero command (if active), then the runner
        (its cycle in progress, whose result is dropped, and a solve, which ends at its next
        iteration). The zero goes first: a long solve must not leave the last command standing."""
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        if self._tick_guard is not None:
            self.destroy_guard_condition(self._tick_guard)
            self._tick_guard = None
        with self._publish_lock:    # after any result being published, before none can be
            if self._active:
                self._send(self._loop.idle(reason))
            self._active = False
        if self._runner is not None:
            self._runner.stop()

    def halt(self, reason: str) -> None:
        """Stop commanding now, from any thread (the process's stop signal): one zero command if
        active, and no cycle's result after it. The lifecycle state stays as it is until the
        transition that follows (shutdown) releases the rest: waiting for it first (the
        executor's callback in progress, a cycle's lock) let the cycles command on meanwhile."""
        with self._publish_lock:
            if not self._active:
                return
            self._send(self._loop.idle(reason))
            self._active, self._halted = False, True
        self.get_logger().info(f"{reason}: zero command sent")

    # -- the control cycle ------------------------------------------------------------------

    def _on_timer(self) -> None:
        if self._tick_guard is not None:
            # /clock followed on its own thread: the timer can come due in the executor's pass
            # that also holds the inputs sent before that clock, and timers run before
            # subscriptions there. The tick waits for the next pass (guards run after them), so
            # the cycle sees them, as when the clock was one of the subscriptions.
            self._tick_time = self._now()
            self._tick_guard.trigger()
            return
        runner = self._runner
        if runner is not None:
            runner.tick(self._now())

    def _on_tick_guard(self) -> None:
        runner = self._runner
        if runner is not None and self._tick_time is not None:
            runner.tick(self._tick_time)
            self._tick_time = None

    def _publish(self, result: CycleResult) -> None:
        """The runner's output (any thread): sent while active, dropped once stopping."""
        with self._publish_lock:
            if self._active:
                self._send(result)

    def _publish_late(self, result: CycleResult) -> None:
        """A late plan's report (the planner thread): stamped with its cycle's time."""
        with self._publish_lock:
            if self._active:
                header = Header(stamp=to_time(result.time), frame_id=self._values["frame_id"])
                self._late_pub.publish(self._plan_diagnostics(result, header))

    def _send(self, result: CycleResult) -> None:
        """Command and reports, stamped with the cycle's time (what observation_age refers to)."""
        when = result.time if math.isfinite(result.time) else self._now()
        header = Header(stamp=to_time(when), frame_id=self._values["frame_id"])
        self._output.send(result, header, when, self._loop.config)
        # The bookkeeping after the command: a process stopped in between sends it no later.
        self._stats.record(result, when)
        self._diagnostics_pub.publish(self._plan_diagnostics(result, header))
        if result.plan is not None:
            self._plan_pub.publish(self._plan_message(result.plan, header))
        # Built only for a reader (RViz): a Path of H poses is ~1 ms of Python a cycle.
        if result.path is not None and self._path_pub.get_subscription_count() > 0:
            self._path_pub.publish(path_message(result.path, header))
        self._log_status(result)

    def _plan_diagnostics(self, result: CycleResult, header: Header) -> PlanDiagnostics:
        name, why = result.status.name, result.message
        if result.status == Status.STALE and self._silent_input:
            why = f"{why}; {self._silent_input}"
        return PlanDiagnostics(
            header=header, status=int(result.status),
            status_text=f"{name}: {why}" if why else name,
            planner=self._loop.planner.name, solve_time=float(result.solve_time),
            iterations=int(result.iterations), syncs=int(result.syncs),
            start_samples=int(result.start_samples), plan_cost=float(result.cost),
            dynamics_residual=float(result.residual),
            observation_age=float(result.observation_age),
            deadline_missed=bool(result.deadline_missed), warm_started=bool(result.warm_started),
            goal_distance=float(result.goal_distance),
            observation_novelty=float(result.novelty), goal_novelty=float(result.goal_novelty),
            command_delay=float(result.command_delay),
            command=[float(v) for v in result.command])

    def _plan_message(self, plan, header: Header) -> Plan:
        actions = plan.actions.detach().cpu().double()
        states = plan.states.detach().cpu().double()
        return Plan(header=header, planner=plan.planner, horizon=actions.shape[0],
                    action_dim=actions.shape[1], latent_dim=states.shape[1],
                    actions=actions.reshape(-1).tolist(), states=states.reshape(-1).tolist(),
                    cost=float(plan.cost))

    def _log_status(self, result: CycleResult) -> None:
        """A line when the status or its reason changes (``StatusLog``), by severity."""
        if not self._status_log.worth_logging(result.status, result.message):
            return
        text = f"{result.status.name}" + (f": {result.message}" if result.message else "")
        # One call site per severity: rclpy refuses a call site whose severity changes.
        severity = result.severity
        if severity == "warn":
            self.get_logger().warning(text)
        elif severity == "error":
            self.get_logger().error(text)
        else:
            self.get_logger().info(text)

    def _on_diagnostics(self) -> None:
        with self._lock:
            if self._stats is None:
                return
            level, message = self._stats.health() if self._active else ("ok", "inactive")
            values = self._stats.summary()
            values.update(lifecycle="active" if self._active else "inactive",
                          planner=self._values["planner"], horizon=str(self._values["horizon"]),
                          control_rate_hz=f"{self._values['control_rate_hz']:g}",
                          solve_budget_s=f"{self._loop.config.deadline:g}")
        mismatches, silent = self._peers_of_another_type()
        self._silent_input = silent[0] if silent else ""
        if mismatches:
            values["type_mismatches"] = "; ".join(mismatches)
            # the status says why, not only the log: STALE "no observation yet" alone hid that
            # the camera publishes another type (an audit)
            level, message = (("warn", mismatches[0]) if level == "ok"
                              else (level, f"{message}; {mismatches[0]}"))
            if not self._told_mismatches:      # logged once while it lasts
                for text in mismatches:
                    self.get_logger().warning(text)
        self._told_mismatches = bool(mismatches)
        if self._frame_delivery is not None:
            level, message = self._frame_loss(level, message, values)
        if self.get_parameter("use_sim_time").value:
            # Two clocks (a sim and a bag player, two sims) make time jump back and forth: CLOCK
            # and zero at a jump back that a cycle or an input's arrival sees (one set right
            # before either goes unseen), cycles in between; say why, whatever was seen.
            clocks = self.count_publishers("/clock")
            values["clock_publishers"] = str(clocks)
            if clocks > 1:   # the cause of what two clocks bring (CLOCK, STALE): said beside it
                cause = f"{clocks} publishers on /clock: the node's time follows whichever published last"
                level, message = ("warn", cause) if level == "ok" else (level, f"{message}; {cause}")
        self._report_health(level, message, values)

    def _frame_loss(self, level: str, message: str, values: dict[str, str]) -> tuple[str, str]:
        """Camera frames that never reached the node, on /diagnostics, and said (logged when it
        starts) where they are many: the level and message with it."""
        missed, published = self._frame_delivery.lost()
        values["camera_frames_lost"] = f"{missed} of {published} in the last {delivery.WINDOW_S:g} s"
        note = delivery.loss_note(self._frame_delivery, self._image_topic,
                                  delivery.reliable(self._image_reader.qos_profile),
                                  lambda: delivery.all_reliable(self, self._image_topic))
        if note is not None and not self._told_frame_loss:
            self.get_logger().warning(note)
        self._told_frame_loss = note is not None
        if note is None:
            return level, message
        return ("warn", note) if level == "ok" else (level, f"{message}; {note}")

    def _report_health(self, level: str, message: str, values: dict[str, str]) -> None:
        # The fully qualified name (diagnostic_updater's use_fqn): a diagnostic_aggregator keys
        # its items by name, and two robots' controllers, /robot1 and /robot2, would be one.
        fqn = self.get_fully_qualified_name()
        self._health_pub.publish(diagnostic_array(
            f"{fqn}: control loop", fqn, level, message, values, self.get_clock().now().to_msg()))

    # -- inputs -----------------------------------------------------------------------------

    @staticmethod
    def _bounded(msg_type, callback, refuse, limit: int = MAX_IMAGE_MESSAGE_BYTES, what: str = "an image",
                 with_info: bool = False):
        """A raw subscription's callback: a message of at most ``limit`` bytes is read and passed
        to ``callback`` (``with_info``: with its MessageInfo); a larger one goes to
        ``refuse(reason)`` unread. Reading a message holds the interpreter (0.15-0.6 s for 100 MB
        here, 0.08 s for a goal of a million names), and with it the watchdog that must stop the
        robot when cycles stop."""
        def read(data: bytes):
            if len(data) > limit:
                refuse(f"a message of {len(data) / 2**20:.1f} MiB, more than the "
                       f"{limit / 2**20:g} MiB {what} may be: not read")
                return None
            try:
                return deserialize_message(data, msg_type)
            except Exception as exc:  # noqa: BLE001 -- rclpy raises plain exceptions on bad CDR
                # A peer's malformed bytes (a truncated message): its refusal, not the node's end
                # (an adversarial audit: 12 bytes on the camera topic ended the controller).
                refuse(f"a message that does not decode as {msg_type.__name__} "
                       f"({type(exc).__name__}: {str(exc)[:200]})")
                return None

        def take(data: bytes) -> None:
            if (msg := read(data)) is not None:
                callback(msg)

        def take_with_info(data: bytes, info: dict) -> None:     # two arguments: rclpy passes the info
            if (msg := read(data)) is not None:
                callback(msg, info)
        return take_with_info if with_info else take

    def _refuse_unread(self, what: str, reason: str) -> None:
        """A camera or joint_states message refused unread (``what``): the observation, as of its
        arrival (its stamp is in what was not read); said in the log where no model reads
        joints (a joint trajectory's positions)."""
        loop = self._loop
        if loop is None:
            return
        joints = what == "joint_states"
        if joints and self._joints is None:
            self.get_logger().error(f"joint_states refused: {reason}", throttle_duration_sec=1.0)
            return
        now = self._now()
        loop.reject_observation(f"{what}: {reason}", now, received=now, joints=joints)

    def _unread_goal(self, kind: str):
        """The refusal of a goal message of ``kind`` too large to read (``_bounded``)."""
        def refuse(reason: str) -> None:
            if self._loop is not None and self._goal_usable(kind):
                self._refuse_goal(f"{GOAL_TOPICS[kind][2]}: {reason}")
        return refuse

    def _refuse_goal(self, reason: str) -> None:
        """A goal message that cannot be used: the loop's goal is that refusal (ERROR)."""
        self._goals.refuse(reason)
        self.get_logger().error(f"goal refused: {reason}", throttle_duration_sec=1.0)

    def _on_image(self, msg: Image | CompressedImage, info: dict) -> None:
        """``info``: the message's MessageInfo, which says its publisher (``_frame``)."""
        loop = self._loop
        if loop is not None:
            source = self._publisher_names.source(info, self._image_topic)
            self._observe(loop, msg.header, lambda stamp: self._frame(loop, msg, stamp, source), "image")

    def _frame(self, loop, msg: Image | CompressedImage, stamp: float, source=None):
        """The camera observation of ``msg``, its stamp; ValueError where another publisher sent
        frames within max_observation_age of it: which one is the robot's camera cannot be told,
        as for two publishers of one joint (an adversarial audit: a second camera's frames were
        planned from, every cycle OK)."""
        window = loop.config.max_observation_age
        other = None if source is None else self._cameras.others(("image",), source, stamp, window).get("image")
        if other is not None:
            raise ValueError(conflict_text("frames", source, [other], window, "the robot's camera", "the camera"))
        return {"image": self._image_to_rgb(msg, loop.image_size, self._crop)}, stamp, None

    def _on_joint_states(self, msg: JointState, info: dict) -> None:
        """``info``: the message's MessageInfo, which says its publisher (two that name one
        joint leave no way to tell which is the robot: ``JointStateMerger``)."""
        loop = self._loop
        if loop is None:
            return
        source = self._publisher_names.source(info, self._joint_states_topic)
        self._output.note_joint_states(msg, loop.config.max_observation_age, source)
        if self._joints is not None:
            self._observe(loop, msg.header, lambda stamp: self._merged_joints(loop, msg, stamp, source),
                          "joint_states")

    def _merged_joints(self, loop, msg: JointState, stamp: float, source=None):
        """The joints observation as of ``msg`` (``JointStateMerger``: several publishers may
        each name some of the joints), its stamp, the oldest of its joints': a joint that stops
        coming makes the observation old, and the cycle STALE; and its newest joint's, by which
        a camera + joints model pairs it with a frame. None when the message names
        none of the model's joints. ValueError while some joint was never named.

        A message stamped further ahead of the clock than max_observation_age is refused as it
        arrives, with its own stamp (ValueError): as a part of the merged observation it would
        stand as fresh for that long after its publisher stopped (one stamped less far ahead is
        judged at the cycle, when the clock may have caught up)."""
        limit = loop.config.max_observation_age
        now = self._now()
        if stamp - now > limit:
            raise ValueError(f"stamp {stamp:.3f} s is {stamp - now:.3f} s ahead of the clock as it "
                             f"arrives (more than max_observation_age, {limit:g} s)"
                             f"{lead_hint(now - stamp)}")
        merged = self._joints.update(msg, stamp, latest=now + limit, source=source, window=limit)
        if merged is None:
            if self._joints.missing:
                raise ValueError(self._joints.describe_missing(msg.name))
            newest = self._joints.newest
            if newest is None or newest < now - limit:   # said only while no publisher names them
                self.get_logger().warning(
                    f"joint_states names none of the model's joints (it names "
                    f"{shorten(', '.join(msg.name), 120) or 'none'}; the model reads "
                    f"{', '.join(self._joints.wanted)}): no observation from it",
                    throttle_duration_sec=5.0)
            return None
        lagging = self._joints.named_before(stamp - limit / 2)   # said before the cycles go STALE
        if lagging:
            self.get_logger().warning(
                f"joint_states has not named joint(s) {lagging} for {stamp - merged[1]:.2f} s while it "
                f"names others: the observation is as old as its oldest joint (STALE past "
                f"max_observation_age, {limit:g} s)", throttle_duration_sec=1.0)
        return {"joints": merged[0]}, merged[1], self._joints.newest

    def _observe(self, loop, header: Header, convert, what: str) -> None:
        """Stamp checked, message converted (``convert(stamp)``: the observation, its stamp and
        its newest part's (merged joints; else None), or None when there is nothing new), handed
        to the loop; or refused with the reason."""
        now = stamp = self._now()
        try:
            stamp = stamp_seconds(header.stamp) or now
            converted = convert(stamp)
        except ValueError as exc:   # refused as of its own stamp when it has a valid one
            loop.reject_observation(f"{what}: {exc}", stamp, received=now, joints=what == "joint_states")
            return
        except Exception as exc:  # noqa: BLE001 -- a message the conversion did not foresee
            # A bug met by a peer's message, said with its traceback: one frame must not end the
            # controller (an audit's crafted JPEG raised cv2.error here, and the node exited).
            self.get_logger().error(f"{what}: converting a message raised:\n{traceback.format_exc()}",
                                    throttle_duration_sec=5.0)
            loop.reject_observation(f"{what}: cannot convert the message ({type(exc).__name__}: "
                                    f"{shorten(str(exc), 200)})", stamp, received=now,
                                    joints=what == "joint_states")
            return
        if converted is not None:
            observation, observed, newest = converted
            loop.observe(observation, observed, received=now, newest=newest)

    def _on_goal_state(self, msg: JointGoal) -> None:
        loop = self._loop
        if loop is None or not self._goal_usable("joints"):
            return
        try:
            spec = self._card.goal_joint_input
            joints = goal_joint_values(msg, spec.names, spec.fields)
        except ValueError as exc:
            self._refuse_goal(str(exc))      # its text names goal_state
            return
        stamp = self._goal_stamp(msg.header, "goal_state")
        if stamp is None or not self._take_goal("joints", joints, stamp):
            return
        positions = joints[position_columns(spec.names, spec.fields)] if "position" in spec.fields else joints
        named = ", ".join(f"{n}={v:.4g}" for n, v in zip(spec.names, positions))
        self.get_logger().info(f"new goal (joint positions): {named}", throttle_duration_sec=1.0)
        ignored = [n for n in msg.name if n not in spec.names]
        if ignored:     # a typo, or a joint the model was trained without: not quietly dropped
            self.get_logger().warning(
                f"the goal also names {len(ignored)} joint(s) the model does not read, ignored: "
                f"{shorten(', '.join(ignored), 200)}", throttle_duration_sec=5.0)

    def _on_goal_image(self, msg: Image) -> None:
        loop = self._loop
        if loop is None or not self._goal_usable("image"):
            return
        try:
            image = image_to_rgb(msg, loop.image_size, self._crop)
        except ValueError as exc:
            self._refuse_goal(f"goal image: {exc}")
            return
        stamp = self._goal_stamp(msg.header, "goal image")
        if stamp is None or not self._take_goal("image", image, stamp):
            return
        self.get_logger().info(f"new goal (image {msg.width}x{msg.height})", throttle_duration_sec=1.0)

    def _goal_stamp(self, header: Header, what: str) -> Optional[int]:
        """A goal's stamp (ns; 0: unstamped); None, the goal refused (ERROR) naming ``what``, for
        what no clock produces (a negative time), as an observation is."""
        try:
            stamp_seconds(header.stamp)
        except ValueError as exc:
            self._refuse_goal(f"{what}: {exc}")
            return None
        return stamp_ns(header.stamp)

    def _take_goal(self, key: str, value: np.ndarray, stamp: int) -> bool:
        """Offer a goal part to the goal intake (``control.goal_intake``); whether it was taken."""
        verdict = self._goals.take(key, value, stamp, int(self._now() * 1e9))
        if verdict.warns:
            self.get_logger().warning(verdict.note, throttle_duration_sec=5.0)
        elif verdict.note:
            self.get_logger().info(verdict.note, throttle_duration_sec=5.0)
        return verdict.taken

    def _inputs_text(self) -> str:
        card = self._card
        image = self.resolve_topic_name("image")
        image += "/compressed" if self._values["image_transport"] == "compressed" else ""
        parts = ([f"image {card.image.size}px on {image}"] if card.image else []) + \
                ([f"joints {list(card.joints.names)} x {list(card.joints.fields)} on "
                  f"{self.resolve_topic_name('joint_states')}"] if card.joints else [])
        return " + ".join(parts)

    def _output_text(self) -> str:
        """What the command carries, in its order: a Float64MultiArray's values have no names,
        so the robot's controller must list its joints in the model's action order."""
        (topic, msg_type), = self._outputs
        names = self._output.names
        return f"{msg_type.rsplit('/', 1)[-1]} on {topic} ({', '.join(names)}, in this order)"

    def action_range_warnings(self) -> list[str]:
        return wiring.action_range_warnings(self._card)

    def topic_mismatches(self) -> list[str]:
        """The card's topics against the ones this node reads and sends (``wiring.topic_mismatches``)."""
        return wiring.topic_mismatches(self, self._card, self._values)

    def _goal_usable(self, kind: str) -> bool:
        """Whether the goal intake takes goals of ``kind`` (``GoalIntake.accepts``); a warning
        when it does not."""
        if self._goals.accepts(kind):
            return True
        topic, other, _ = GOAL_TOPICS[kind]
        self.get_logger().warning(f"~/{topic} ignored: the model does not encode it; give the "
                                  f"goal on ~/{other}", throttle_duration_sec=5.0)
        return False

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        loop = self._loop
        response.success = loop is not None
        if loop is not None:
            loop.reset()
        response.message = "warm start cleared" if loop is not None else "not configured"
        return response

    # -- parameters -------------------------------------------------------------------------

    def _check_parameters(self, parameters) -> SetParametersResult:
        """Refuse a change with the reason: bad value, static while configured, unknown knob."""
        values = params.read_all(self)
        loop, knobs = self._loop, {}     # the call's knob changes, checked together
        for parameter in parameters:
            name, spec = parameter.name, params.BY_NAME.get(parameter.name)
            if spec is None and name not in params.ROS_STATIC:      # rclpy's others
                continue
            reason = params.locked(name, values) or (spec.validate(parameter.value) if spec else None)
            if reason is None and (spec is None or not spec.dynamic) and loop is not None:
                reason = (f"{name} is static and the node is configured: deactivate, "
                          "cleanup, set it, then configure")
            if reason is None and spec is not None and spec.knob and loop is not None:
                try:
                    knobs.update(params.settings_change(spec, parameter.value, values))
                except ValueError as exc:
                    reason = f"{name}: {exc}"
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            if spec is not None or name in params.ROS_STATIC:    # use_sim_time too: the checks read it
                values[name] = parameter.value
        if knobs:   # together, as they will apply: an atomic call is judged by where it ends
            try:
                loop.check_planner_settings(**knobs)
            except ValueError as exc:
                named = ", ".join(p.name for p in parameters if p.name in params.BY_NAME)
                return SetParametersResult(successful=False, reason=f"{named}: {exc}")
        reason = params.check_consistency(values)
        return SetParametersResult(successful=reason is None, reason=reason or "")

    def _apply_parameters(self, parameters) -> None:
        """Dynamic changes go to the loop (applied from its next cycle), a call's together, as
        ``_check_parameters`` judged them; logged one line a call, at most one a second, so that a
        peer setting parameters in a loop cannot flood the log (/parameter_events carries every
        change). rclpy's post-set callbacks cannot refuse, and one that raises ends the node: a
        change that fails here anyway is an ERROR in the log, the loop keeping what it had."""
        loop, changed, knobs, config = self._loop, [], {}, {}
        values = params.read_all(self)
        for parameter in parameters:
            self._refused.pop(parameter.name, None)
            spec = params.BY_NAME.get(parameter.name)
            if spec is None or not spec.dynamic or loop is None:
                continue
            if spec.knob:
                knobs.update(params.settings_change(spec, parameter.value, values))
            else:
                config.update(params.config_change(spec.name, parameter.value))
            changed.append(f"{spec.name} := {parameter.value!r}")
        try:
            if knobs:
                loop.request_planner_settings(**knobs)
            if config:
                loop.update_config(**config)
        except Exception as exc:  # noqa: BLE001 -- raised here, it would end the node
            self.get_logger().error(f"{shorten('; '.join(changed))}: set but not applied: {exc}")
            return
        if changed:
            self.get_logger().info(shorten("; ".join(changed)) + " (from the next cycle)",
                                   throttle_duration_sec=1.0)

    # -- helpers ----------------------------------------------------------------------------

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def start(self, stopping: Callable[[], bool] = lambda: False) -> bool:
        """Configure and activate (autostart); False (and the reason logged) if either fails.
        Left inactive if ``stopping()`` says, after configure, that a stop was asked for meanwhile."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return False
        if stopping():
            self.get_logger().info("configured, not activated: the process was asked to stop")
            return True
        return self.trigger_activate() == TransitionCallbackReturn.SUCCESS


def main(args: Optional[list[str]] = None) -> int:
    """Run the node until SIGINT or SIGTERM; the exit status.

    With autostart, a failed configure or activate ends the process with status 1 (the reason is
    in the log), so that whoever started it (launch, a supervisor) sees the failure at once.
    Without it, the node waits unconfigured for a lifecycle manager.
    """
    argv = sys.argv if args is None else args
    parser = argparse.ArgumentParser(
        prog="grasp_controller",
        description="GRASP receding-horizon controller (ROS 2 lifecycle node).",
        epilog="ROS arguments follow --ros-args, e.g. --ros-args --params-file "
               "config/grasp_controller.yaml -p use_sim_time:=true -r image:=/camera/image_raw")
    parser.add_argument("--autostart", action="store_true",
                        help="configure and activate on start (same as -p autostart:=true)")
    try:
        own_args = remove_ros_args(argv)[1:]
    except RuntimeError as exc:   # rcl's parse error: say so without a traceback
        parser.error(f"bad ROS arguments: {exc}{_yaml_hint(str(exc))}")
    options = parser.parse_args(own_args)
    # The executor spins in its own thread, so that the main thread is free to take the signal
    # and then run the shutdown transition (the last zero command) itself (see interrupts.py).
    # While the node starts (autostart's configure included) a signal only sets a flag: a
    # configure is not cut half-way, and the node is not activated after it.
    interrupts.flag_once()
    interrupts.exit_with_parent()
    context = Context()      # this process's own: nothing global outlives main()
    node = executor = spinner = None
    stop, spun = threading.Event(), threading.Event()
    failures: list[str] = []
    status = 0
    try:
        rclpy.init(args=argv, context=context, signal_handler_options=SignalHandlerOptions.NO)
        node = GraspController(context=context)
        # Single-threaded: rclpy's executor can fail when one of its threads destroys entities
        # (cleanup) while another builds a wait set with them. Cycles are short (solve budget
        # below one period), so inputs and service requests wait at most one cycle.
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        # Autostart before spinning: nothing runs concurrently yet.
        if ((options.autostart or node.get_parameter("autostart").value)
                and not interrupts.stop_requested() and not node.start(interrupts.stop_requested)):
            node.get_logger().fatal("autostart failed (the reason is above): exiting")
            status = 1
        elif not interrupts.stop_requested():
            spinner = threading.Thread(target=_spin, args=(executor, stop, spun, failures, node.get_logger()),
                                       name="executor")
            spinner.start()
            interrupts.interrupt_once()    # raises now if a signal came while starting
            # An Event, not Thread.join: a KeyboardInterrupt inside join(timeout) can leave the
            # thread marked as ended (CPython 3.11), and the shutdown would then run beside a
            # callback still in progress (a long configure) and abort the process.
            while not spun.wait(0.5):
                pass
    except KeyboardInterrupt:
        pass
    finally:
        interrupts.ignore()      # a repeated signal must not cut the shutdown short
        if node is not None:     # the zero at once, not after the executor's callback in progress
            node.halt("stopping on a stop signal" if interrupts.stop_requested()
                      else "stopping: the executor ended")
        # Order matters: a C++ thread or DDS participant still alive when the interpreter
        # finalises can abort the process ("terminate called without an active exception").
        # So: stop the executor thread and join it; the shutdown transition from this thread
        # alone; destroy the executor and the node; collect the node (its lifecycle state
        # machine and services hold the rcl node until then); shut the context down and
        # finalise it, which deletes the DDS participant and its threads, all before returning.
        stop.set()
        if spinner is not None:
            spun.wait()          # the callback in progress ends first
            spinner.join()
        if node is not None:
            _shutdown_transition(node)
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        node = executor = spinner = None
        gc.collect()
        rclpy.try_shutdown(context=context)
        context.destroy()
    if failures:               # a callback raised: exit with its traceback, not quietly
        sys.stderr.write(failures[0])
        return 1
    return status


SPIN_POLL_S = 0.1
"""Seconds at most between the executor thread's checks whether to stop."""


def _yaml_hint(error: str) -> str:
    """What to quote, for rcl's refusal of a ``-p`` rule (its value is read as YAML)."""
    if "parameter override" not in error:
        return ""
    if "Value type 'bool'" in error:
        return (". YAML 1.1 reads y, n, yes, no, on and off as booleans: quote such names "
                "inside the shell's quotes: -p joint_names:=\"['x', 'y', 'yaw']\"")
    return ". A string that looks like YAML needs quotes inside the shell's: -p model_options:='\"{env: open}\"'"


def _spin(executor, stop: threading.Event, spun: threading.Event, failures: list[str], logger) -> None:
    """The executor thread: callbacks until ``stop`` is set, then ``spun`` is set. An exception
    from this package's own callbacks ends it (and main); one that rclpy raised on its own (a
    peer's message rclpy cannot take; a /clock of negative time, before /clock had its own
    thread, ``sim_clock``) refuses that message and spins on.

    An exception is kept as its traceback's text, not as the object: its frames would keep the
    node alive past main() (see main's shutdown order).
    """
    refused = 0
    try:
        while not stop.is_set():
            try:
                executor.spin_once(timeout_sec=SPIN_POLL_S)
            except ExternalShutdownException:
                raise
            except Exception as exc:  # noqa: BLE001 -- sorted below
                if _raised_in_this_package(exc.__traceback__):
                    raise
                refused += 1
                if refused & (refused - 1) == 0:     # the 1st, 2nd, 4th, 8th... time
                    logger.error(f"rclpy refused an incoming message ({refused} so far): "
                                 f"{type(exc).__name__}: {exc}")
    except ExternalShutdownException:   # the context was shut down from elsewhere
        pass
    except Exception:  # printed by main after the shutdown transition
        failures.append(traceback.format_exc())
    finally:
        spun.set()


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _raised_in_this_package(tb) -> bool:
    """Did the exception pass through this package's code below the spin loop's own frame?"""
    tb = tb.tb_next if tb is not None else None     # the first frame is the spin loop's
    while tb is not None:
        if os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep):
            return True
        tb = tb.tb_next
    return False


def _shutdown_transition(node: GraspController) -> None:
    """The shutdown transition (a zero command if active), from whatever state the node is in;
    none from finalized (a peer's shutdown transition already ran it)."""
    # (rclpy's LifecycleNode has no public accessor of its state; its trigger raises from finalized)
    if not rclpy.ok(context=node.context) or node._state_machine.current_state[1] == "finalized":
        return
    try:
        node.trigger_shutdown()
    except Exception as exc:  # already finalized, or interrupted in mid-transition: still exit
        node.get_logger().warning(f"shutdown transition: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    leave(main())

"""The odometry relay over real DDS: a Nav2 base's nav_msgs/Odometry as joints x, y, yaw, and
its goal pose as a joint goal, into a real controller on sim time."""
from __future__ import annotations

import math
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not importable")

from geometry_msgs.msg import PoseStamped  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402

from grasp_ros.msg import JointGoal, PlanDiagnostics  # noqa: E402
from grasp_ros.ros import qos  # noqa: E402
from grasp_ros.ros.controller_node import GraspController  # noqa: E402
from grasp_ros.ros.odometry_relay import OdometryRelay, odometry_to_joints, pose_to_goal  # noqa: E402

TIMEOUT_S = 60.0


def quaternion(yaw: float):
    from geometry_msgs.msg import Quaternion
    return Quaternion(z=math.sin(yaw / 2), w=math.cos(yaw / 2))


def odometry(x: float, y: float, yaw: float, forward: float = 0.0, turn: float = 0.0, sec: int = 0,
             frame: str = "odom") -> Odometry:
    msg = Odometry()
    msg.header.frame_id, msg.header.stamp.sec, msg.child_frame_id = frame, sec, "base_link"
    msg.pose.pose.position.x, msg.pose.pose.position.y = x, y
    msg.pose.pose.orientation = quaternion(yaw)
    msg.twist.twist.linear.x, msg.twist.twist.angular.z = forward, turn
    return msg


def test_odometry_becomes_joints_with_the_twist_in_the_odometry_frame():
    joints = odometry_to_joints(odometry(1.0, -2.0, math.pi / 2, forward=0.5, turn=0.2, sec=7))
    assert joints.name == ["x", "y", "yaw"] and joints.header.stamp.sec == 7
    assert joints.position == pytest.approx([1.0, -2.0, math.pi / 2])
    assert joints.velocity == pytest.approx([0.0, 0.5, 0.2], abs=1e-12)   # facing +y: forward is +y
    goal = PoseStamped()
    goal.pose.position.x, goal.pose.orientation = 3.0, quaternion(-2.5)
    assert pose_to_goal(goal).position == pytest.approx([3.0, 0.0, -2.5])
    bad = odometry(math.nan, 0.0, 0.0)
    with pytest.raises(ValueError, match="non-finite"):
        odometry_to_joints(bad)


class Base:
    """A probe that plays a Nav2 base: /clock, odometry, a goal pose; records the controller."""

    def __init__(self, context):
        self.node = rclpy.create_node("nav2_base", context=context, namespace="/relayed")
        self.clock = self.node.create_publisher(Clock, "/clock", 10)
        self.odom = self.node.create_publisher(Odometry, "odom", 10)
        self.goal = self.node.create_publisher(PoseStamped, "goal_pose", 10)
        self.states, self.commands, self.diagnostics = [], [], []
        self.node.create_subscription(JointState, "base_state", self.states.append, 10)
        self.node.create_subscription(Float64MultiArray, "command", lambda m: self.commands.append(list(m.data)), 10)
        self.node.create_subscription(PlanDiagnostics, "/relayed/grasp_controller/plan_diagnostics",
                                      self.diagnostics.append, 10)


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S      # a hang guard, not a budget
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {TIMEOUT_S} s"
        time.sleep(0.02)


def test_an_orientation_that_is_not_a_rotation_is_refused_and_a_near_unit_one_read_alike():
    """yaw_of took every quaternion for a unit one: (0, 0, 1, 1) gave 2.03 rad for pi/2, and the
    zero quaternion was read as yaw 0, in odometry and goal poses (an adversarial audit)."""
    from geometry_msgs.msg import Quaternion
    from grasp_ros.ros.odometry_relay import pose_to_goal, yaw_of
    unit = math.sqrt(0.5)
    assert yaw_of(Quaternion(z=unit, w=unit)) == pytest.approx(math.pi / 2)
    assert yaw_of(Quaternion(z=unit * 1.05, w=unit * 1.05)) == pytest.approx(math.pi / 2)   # drifted
    for q in (Quaternion(x=0.0, y=0.0, z=0.0, w=0.0), Quaternion(z=1.0, w=1.0), Quaternion(z=0.5, w=0.0),
              Quaternion(z=0.01, w=0.01)):
        with pytest.raises(ValueError, match="not a rotation"):
            yaw_of(q)
    pose = PoseStamped()
    pose.pose.orientation = Quaternion(x=0.0, y=0.0, z=0.0, w=0.0)
    with pytest.raises(ValueError, match="not a rotation"):
        pose_to_goal(pose)


def test_a_base_reports_odometry_and_is_sent_a_goal_pose_through_the_relay():
    """The relay feeds the controller (the analytic model: joints x, y) from odometry and a goal
    pose; the controller plans towards the goal. A goal pose in another frame is not relayed."""
    context = Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    relay = OdometryRelay(context=context, namespace="/relayed")
    controller = GraspController(context=context, namespace="/relayed", parameter_overrides=[
        Parameter("use_sim_time", value=True), Parameter("model", value="analytic"),
        Parameter("model_options", value="{env: open, horizon: 20}"), Parameter("horizon", value=20),
        Parameter("timing", value="fixed_iterations"), Parameter("planner.iterations", value=5),
        Parameter("joint_names", value=["x", "y", "yaw"]), Parameter("clock_timeout", value=3600.0)],
        cli_args=["--ros-args", "-r", "joint_states:=base_state", "-r", "~/goal_state:=goal_state"])
    base = Base(context)
    for node in (relay, controller, base.node):
        executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        assert controller.start()
        ns = 0

        def step(yaw: float = 0.3):
            nonlocal ns
            ns += 100_000_000
            msg = Clock()
            msg.clock.sec, msg.clock.nanosec = divmod(ns, 10**9)
            base.clock.publish(msg)
            odo = odometry(-0.5, -0.4, yaw)
            odo.header.stamp = msg.clock
            base.odom.publish(odo)

        answered = [0, time.monotonic()]

        def step_when_answered():
            """The next tick once the controller has reported a cycle since the last one (lock
            step: a clock run ahead of a busy controller makes its cycles FALLBACK, held up, and
            warm-starts the next from a plan shifted by the ticks it missed). Without a report for
            a while (a tick the timer did not fire for) it steps anyway, so the test cannot hang."""
            if len(base.diagnostics) > answered[0] or time.monotonic() - answered[1] > 2.0:
                answered[:] = [len(base.diagnostics), time.monotonic()]
                step()
        other = PoseStamped()
        other.header.frame_id, other.pose.position.x = "map", 0.6
        wait_until(lambda: base.goal.get_subscription_count() > 0, "the relay's goal subscription")
        wait_until(lambda: (step(), base.states)[1], "relayed odometry")
        assert base.states[-1].name == ["x", "y", "yaw"] and base.states[-1].position[2] == pytest.approx(0.3)
        base.goal.publish(other)                       # another frame than the odometry's: kept out
        seen = len(base.diagnostics)
        wait_until(lambda: (step_when_answered(), len(base.diagnostics) > seen + 2)[1],
                   "cycles after the other frame's goal")
        assert "no goal" in base.diagnostics[-1].status_text, base.diagnostics[-1].status_text
        goal = PoseStamped()
        goal.header.frame_id = "odom"
        goal.pose.position.x, goal.pose.position.y, goal.pose.orientation = 0.6, 0.5, quaternion(0.0)
        base.goal.publish(goal)
        wait_until(lambda: (step_when_answered(),
                            any(d.status == PlanDiagnostics.STATUS_OK for d in base.diagnostics))[1],
                   "a planned cycle towards the goal pose")
        planned = [d for d in base.diagnostics if d.status == PlanDiagnostics.STATUS_OK][-1]
        assert planned.command[0] > 0.0 and planned.command[1] > 0.0        # towards (0.6, 0.5)
    finally:
        executor.shutdown()
        for node in (relay, controller, base.node):
            node.destroy_node()
        rclpy.shutdown(context=context)


def test_a_goal_pose_before_any_odometry_waits_for_its_frame():
    """Before the first odometry the relay cannot tell the odometry's frame: a goal pose in
    "map" was relayed then and refused later (an audit, reading the code). The newest waits for
    the first odometry, which relays or refuses it."""
    context = Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    nodes = []
    try:
        for frame, relayed in (("map", False), ("odom", True)):
            namespace = f"/held_{frame}"
            relay = OdometryRelay(context=context, namespace=namespace)
            probe = rclpy.create_node("nav2_base", context=context, namespace=namespace)
            nodes += [relay, probe]
            odom = probe.create_publisher(Odometry, "odom", 10)
            poses = probe.create_publisher(PoseStamped, "goal_pose", 10)
            goals = []
            probe.create_subscription(JointGoal, "goal_state", goals.append, qos.GOAL)
            executor.add_node(relay)
            executor.add_node(probe)
            wait_until(lambda: poses.get_subscription_count() > 0 and odom.get_subscription_count() > 0,
                       "the relay's subscriptions")
            goal = PoseStamped()
            goal.header.frame_id, goal.pose.position.x = frame, 2.0
            poses.publish(goal)
            wait_until(lambda: relay._held is not None, f"the relay holding the {frame} goal")
            # best effort: sent until one is taken
            wait_until(lambda: (odom.publish(odometry(0.0, 0.0, 0.0, frame="odom")), relay._held is None)[1],
                       "the held goal handled at the first odometry")
            if relayed:
                wait_until(lambda: goals, "the odom goal relayed")
                assert goals[0].position[0] == 2.0
            else:
                time.sleep(0.5)                    # a relayed goal would be here by now
                assert not goals
    finally:
        executor.shutdown()
        for node in nodes:
            node.destroy_node()
        rclpy.shutdown(context=context)


def test_odometry_from_a_second_source_is_not_relayed():
    """Two odometry sources on one topic (a wheel odometry in odom, a filter's in map; an old one
    replayed) were all relayed, the base's pose jumping between them from one message to the next
    (an adversarial audit). The first frame stays the odometry's, and a stamp before the last one
    relayed is refused while the clock has passed it; a clock gone back (a sim reset) is followed."""
    from grasp_ros.ros.odometry_relay import OdometryGate
    gate, second = OdometryGate(), 10**9
    assert gate.refusal("odom", 5 * second, 5 * second) == ""
    gate.passed("odom", 5 * second)
    assert "frame 'map'" in gate.refusal("map", 6 * second, 6 * second)
    assert "1.000 s before the last" in gate.refusal("odom", 4 * second, 6 * second)
    assert gate.refusal("odom", 5 * second, 6 * second) == ""          # a repeat of the stamp
    assert gate.refusal("odom", 1 * second, 2 * second) == ""          # the clock went back too

    context = Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    relay = OdometryRelay(context=context, namespace="/two_sources")
    probe = rclpy.create_node("two_sources", context=context, namespace="/two_sources")
    try:
        odom = probe.create_publisher(Odometry, "odom", 10)
        states = []
        probe.create_subscription(JointState, "base_state", states.append, 10)
        for node in (relay, probe):
            executor.add_node(node)
        wait_until(lambda: odom.get_subscription_count() > 0, "the relay's subscription")
        # best effort: sent until one is relayed
        wait_until(lambda: (odom.publish(odometry(1.0, 0.0, 0.0, sec=5)), states)[1], "the first odometry")
        for stray in (odometry(-3.0, 0.0, 0.0, sec=6, frame="map"), odometry(-3.0, 0.0, 0.0, sec=4)):
            for _ in range(5):
                odom.publish(stray)
        wait_until(lambda: (odom.publish(odometry(2.0, 0.0, 0.0, sec=7)), states[-1].position[0] == 2.0)[1],
                   "the next odometry of the first source")
        assert {s.position[0] for s in states} <= {1.0, 2.0}, [s.position[0] for s in states]
    finally:
        executor.shutdown()
        for node in (relay, probe):
            node.destroy_node()
        rclpy.shutdown(context=context)


@pytest.mark.parametrize("signals", [(signal.SIGINT,), (signal.SIGINT, signal.SIGTERM)],
                         ids=["sigint", "sigint-sigterm"])
def test_the_relay_as_a_process_relays_then_stops_on_a_signal(tmp_path, signals):
    """`ros2 run grasp_ros odometry_relay` (its script) relays odometry over DDS, and a stop
    signal (a second one too, as launch sends SIGTERM after SIGINT) ends it, status 0."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "odometry_relay"
    log = tmp_path / "relay.log"
    context = Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    base = Base(context)
    executor.add_node(base.node)
    with open(log, "w", encoding="utf-8") as out:
        process = subprocess.Popen([sys.executable, str(script), "--ros-args", "-r", "__ns:=/relayed",
                                    "-r", "joint_states:=base_state"],
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        def relayed():
            assert process.poll() is None, log.read_text(encoding="utf-8")
            base.odom.publish(odometry(0.2, 0.1, 0.0))
            executor.spin_once(timeout_sec=0.05)
            return base.states
        wait_until(relayed, "odometry relayed by the process")
        assert base.states[-1].position[0] == pytest.approx(0.2)
        for signum in signals:
            process.send_signal(signum)
        code = process.wait(timeout=TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        executor.shutdown()
        base.node.destroy_node()
        rclpy.shutdown(context=context)
    output = log.read_text(encoding="utf-8")
    assert code == 0, output
    assert "Traceback" not in output, output
